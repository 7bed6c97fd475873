"""Helper processes of the lab end with the lab, even a killed one."""

from __future__ import annotations

import os
import select
import signal
import threading


def exit_with(lab_pid: int) -> None:
    """SIGTERM this process when process ``lab_pid`` ends: a pidfd watched by a daemon thread
    (Linux ≥ 5.3; elsewhere the lab's own shutdown stops its helpers). Exits at once if the
    lab is already gone."""
    try:
        pidfd = os.pidfd_open(lab_pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):
        return

    def watch() -> None:
        select.select([pidfd], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lab-watch", daemon=True).start()
