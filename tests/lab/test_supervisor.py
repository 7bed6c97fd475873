"""Process helpers of the lab supervisor (used by `cotenant down` and the lab's own stop)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from cotenant.lab.supervisor import pid_alive, stop_process_group


def test_a_zombie_is_not_running() -> None:
    """An exited process nobody has reaped yet (what `cotenant down` sees of processes an
    earlier command started: init reaps them, in its own time) counts as gone."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/stat", "rb") as stat:
            if stat.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                break
        time.sleep(0.01)
    assert not pid_alive(child.pid)  # a zombie, not reaped yet
    child.wait()
    assert not pid_alive(child.pid)


def test_a_running_process_is_alive_until_its_group_is_stopped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             start_new_session=True)
    try:
        assert pid_alive(child.pid) and pid_alive(os.getpid())
        started = time.monotonic()
        stop_process_group(child.pid)  # SIGTERM: it ends at once, well before any SIGKILL
        assert time.monotonic() - started < 5
        assert not pid_alive(child.pid)
    finally:
        child.wait(10)
