"""RSA keys generated ahead of need, in the background, for the lab's simulated hardware.

In Azure an HSM generates a vault's keys and each CVM's vTPM its ephemeral key; their time is
part of the latency model. In the lab all of it is CPU of the one machine that also runs the
control plane and every simulated VM: a ten-party rehearsal generates some thirty RSA keys
(2048 and 3072 bits, 50–200 ms each) at the moments the deployment needs them. So the lab keeps
a small stock per size, filled by one low-priority worker process (``nice`` 19) while the
machine is otherwise idle, and takes from it; an empty stock falls back to generating on the
spot. Keys are plain PEM (PKCS#8, unencrypted): the lab's own simulated keys, never real ones.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor

from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.lab.ca import private_pem
from cotenant.lab.lifetime import exit_with

DEFAULT_STOCK = {2048: 24, 3072: 12}


def generate_pem(size: int) -> bytes:
    return private_pem(rsa.generate_private_key(public_exponent=65537, key_size=size))


def _worker_start(lab_pid: int) -> None:
    """The lowest CPU priority, whatever the lab's own (``nice`` is relative); and the worker
    ends with the lab."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    exit_with(lab_pid)


class RsaKeyPool:
    def __init__(self, stock: dict[int, int] | None = None) -> None:
        self.stock = dict(DEFAULT_STOCK if stock is None else stock)
        self._ready: dict[int, collections.deque[bytes]] = {
            size: collections.deque() for size in self.stock}
        self._pending = dict.fromkeys(self.stock, 0)
        self._lock = threading.RLock()  # a done future's callback runs inside _refill
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the background worker and fill the stock."""
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("forkserver"),
                    initializer=_worker_start, initargs=(os.getpid(),))
        self._refill()

    def stop(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def private_pem(self, size: int) -> bytes:
        """A new RSA private key of ``size`` bits (PEM): from the stock, else made now."""
        with self._lock:
            ready = self._ready.get(size)
            pem = ready.popleft() if ready else None
        self._refill()
        return pem if pem is not None else generate_pem(size)

    def available(self, size: int) -> int:
        with self._lock:
            return len(self._ready.get(size, ()))

    def _refill(self) -> None:
        with self._lock:
            if self._executor is None:
                return
            for size, target in self.stock.items():
                while len(self._ready[size]) + self._pending[size] < target:
                    try:
                        future = self._executor.submit(generate_pem, size)
                    except RuntimeError:  # shut down meanwhile
                        return
                    self._pending[size] += 1
                    future.add_done_callback(lambda f, size=size: self._stocked(size, f))

    def _stocked(self, size: int, future: Future[bytes]) -> None:
        with self._lock:
            self._pending[size] -= 1
            if not future.cancelled() and future.exception() is None:
                self._ready[size].append(future.result())


# The lab process's pool (started by the lab server; elsewhere keys are generated on the spot).
POOL = RsaKeyPool()
