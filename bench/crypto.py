"""Sealed-file throughput and peak memory against two same-run baselines.

    python bench/crypto.py [--size-mib 1024] [--chunk-size 1048576] [--dir DIR] [--repeat 2]

Variants (each in its own subprocess, so peak RSS is that variant's alone):

* ``raw``       AES-256-GCM over one in-memory buffer in one call with the same library.
* ``slices``    the same buffer, AES-256-GCM per ``--chunk-size`` slice, no I/O: the per-chunk
                ceiling (one huge call pays for faulting in a 1 GiB output buffer).
* ``stream``    cotenant.crypto.envelope seal/open_sealed, file to file (decrypt discards).
* ``tutorial``  the tutorial's approach: read the whole file, one AES-GCM call, write it out.

Throughput counts plaintext bytes per second of the timed operation (for ``raw`` the buffer
already sits in memory, so that baseline includes no I/O at all). Peak RSS is ru_maxrss.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cotenant.crypto.envelope import open_sealed, seal  # noqa: E402
from cotenant.crypto.wrapping import PrivateKeyUnwrapper, PublicKeyWrapper  # noqa: E402

KEY_ID = "https://bench.vault.azure.net/keys/bench/00000000000000000000000000000000"
MIB = 1 << 20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _kek(path: Path) -> rsa.RSAPrivateKey:
    from cryptography.hazmat.primitives import serialization

    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def run_variant(name: str, work: Path, chunk_size: int) -> dict[str, float]:
    """Run one variant in this process; returns seconds and bytes processed."""
    plain = work / "plain.bin"
    size = plain.stat().st_size
    key = _kek(work / "kek.pem")
    aes_key, nonce = bytes(32), bytes(12)
    if name == "raw-encrypt":
        data = plain.read_bytes()
        start = time.perf_counter()
        AESGCM(aes_key).encrypt(nonce, data, None)
    elif name == "raw-decrypt":
        sealed = AESGCM(aes_key).encrypt(nonce, plain.read_bytes(), None)
        start = time.perf_counter()
        AESGCM(aes_key).decrypt(nonce, sealed, None)
    elif name in ("slices-encrypt", "slices-decrypt"):
        aead, view = AESGCM(aes_key), memoryview(plain.read_bytes())
        if name == "slices-decrypt":
            view = memoryview(
                b"".join(
                    aead.encrypt(nonce, view[i : i + chunk_size], None)
                    for i in range(0, size, chunk_size)
                )
            )
            chunk_size += 16
        operation = aead.encrypt if name == "slices-encrypt" else aead.decrypt
        start = time.perf_counter()
        for i in range(0, len(view), chunk_size):
            operation(nonce, view[i : i + chunk_size], None)
    elif name == "stream-encrypt":
        start = time.perf_counter()
        with plain.open("rb") as src, (work / "plain.sealed").open("wb") as dst:
            seal(
                src,
                dst,
                key_id=KEY_ID,
                wrapper=PublicKeyWrapper(key.public_key()),
                chunk_size=chunk_size,
            )
    elif name == "stream-decrypt":
        start = time.perf_counter()
        with (work / "plain.sealed").open("rb") as src:
            for _ in open_sealed(src, PrivateKeyUnwrapper(key)).chunks():
                pass
    elif name == "tutorial-encrypt":
        start = time.perf_counter()
        data = plain.read_bytes()
        (work / "plain.legacy").write_bytes(nonce + AESGCM(aes_key).encrypt(nonce, data, None))
    elif name == "tutorial-decrypt":
        start = time.perf_counter()
        blob = (work / "plain.legacy").read_bytes()
        plaintext = AESGCM(aes_key).decrypt(blob[:12], blob[12:], None)
        io.BytesIO(plaintext)  # handed to the workload in memory, as the tutorial does
    else:
        raise SystemExit(f"unknown variant {name}")
    return {"seconds": time.perf_counter() - start, "bytes": size, "rss_mib": _peak_rss_mib()}


VARIANTS = tuple(
    f"{kind}-{mode}"
    for mode in ("encrypt", "decrypt")
    for kind in ("raw", "slices", "stream", "tutorial")
)


def _make_plaintext(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as out:
        for _ in range(size // MIB):
            out.write(block)
        out.write(block[: size % MIB])


def _subprocess(name: str, work: Path, chunk_size: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--variant",
        name,
        "--dir",
        str(work),
        "--chunk-size",
        str(chunk_size),
    ]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-size", type=int, default=MIB)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs per variant")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.dir, args.chunk_size)))
        return
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="cotenant-bench-") as tmp:
        work = Path(tmp)
        _make_plaintext(work / "plain.bin", args.size_mib * MIB)
        _kek(work / "kek.pem")
        results: dict[str, dict[str, float]] = {}
        for name in VARIANTS:
            runs = [_subprocess(name, work, args.chunk_size) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            best["rss_mib"] = max(r["rss_mib"] for r in runs)
            results[name] = best
        _report(results, args)


def _report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    print(
        f"cotenant sealed files: {args.size_mib} MiB, chunk {args.chunk_size // 1024} KiB, "
        f"best of {args.repeat}, {os.cpu_count()} CPUs"
    )
    print(f"{'variant':<18}{'MiB/s':>10}{'vs raw':>9}{'vs slices':>11}{'peak RSS MiB':>15}")

    def rate(r: dict[str, float]) -> float:
        return r["bytes"] / MIB / r["seconds"]

    verdicts = []
    for name, r in results.items():
        mode = name.split("-")[1]
        ratio = rate(r) / rate(results[f"raw-{mode}"])
        sliced = rate(r) / rate(results[f"slices-{mode}"])
        print(f"{name:<18}{rate(r):>10.0f}{ratio:>9.0%}{sliced:>11.0%}{r['rss_mib']:>15.1f}")
        if name.startswith("stream"):
            verdicts.append(
                f"{name}: {ratio:.0%} of raw, {sliced:.0%} of slices (target >= 80% of raw) "
                f"{'OK' if ratio >= 0.8 else 'MISSED'}; peak RSS {r['rss_mib']:.1f} MiB "
                f"(target < 64) {'OK' if r['rss_mib'] < 64 else 'MISSED'}"
            )
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
