"""The lab's stock of simulated HSM/vTPM keys: filled in the background, fresh key per take."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.lab.keypool import RsaKeyPool


def _load(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)  # full OpenSSL check
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def test_stock_fills_in_the_background_and_every_key_is_new() -> None:
    pool = RsaKeyPool({2048: 2})
    pool.start()
    try:
        deadline = time.monotonic() + 60
        while pool.available(2048) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.available(2048) == 2
        keys = [_load(pool.private_pem(2048)) for _ in range(3)]  # the third: made on the spot
        assert all(k.key_size == 2048 for k in keys)
        assert len({k.public_key().public_numbers().n for k in keys}) == 3
        while pool.available(2048) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.available(2048) == 2  # refilled after the takes
    finally:
        pool.stop()


def test_sizes_without_stock_and_a_stopped_pool_generate_on_the_spot() -> None:
    pool = RsaKeyPool({2048: 1})
    assert _load(pool.private_pem(3072)).key_size == 3072  # never started: no worker
    assert pool.available(2048) == 0
    pool.start()
    pool.stop()
    assert _load(pool.private_pem(2048)).key_size == 2048
