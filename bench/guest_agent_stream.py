"""Decrypting a sealed file through the guest agent's local API vs. in-process.

    python bench/guest_agent_stream.py [--size-mib 64] [--repeat 2]

* ``local``  ``cotenant.crypto.envelope.open_sealed`` on the sealed bytes in this process, with
             the same RSA key unwrapping the data key (the baseline).
* ``agent``  ``AgentClient.decrypt_stream``: the sealed file is uploaded to a real agent's
             ``POST /sealed/decrypt`` on 127.0.0.1 while the plaintext streams back. The agent
             runs in its own process (as on a VM), with the key placed in its key store (this
             measures the streaming path, not attestation or release).

Throughput counts plaintext bytes per second.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cotenant.azurite import free_port  # noqa: E402
from cotenant.crypto.envelope import open_sealed, seal  # noqa: E402
from cotenant.crypto.skr import ReleasedKey  # noqa: E402
from cotenant.crypto.wrapping import PrivateKeyUnwrapper, PublicKeyWrapper  # noqa: E402
from guest_agent.agent import Agent  # noqa: E402
from guest_agent.client import AgentClient, AgentError  # noqa: E402
from guest_agent.config import parse_config  # noqa: E402
from guest_agent.server import make_server  # noqa: E402

VAULT = "https://bench-kv.vault.azure.net"
KEY_ID = f"{VAULT}/keys/bench-key/0123456789abcdef"


class NoTee:
    name = "none"

    def attest(self, nonce: str) -> str:
        raise RuntimeError("not used")

    def decrypt(self, ciphertext: bytes, padding: object) -> bytes:
        raise RuntimeError("not used")

    def close(self) -> None:
        pass


def _agent(private: rsa.RSAPrivateKey, port: int) -> Agent:
    config = parse_config({
        "tenant": "bench", "party": "p", "vm_name": "vm",
        "orchestration": {"instance": "bench", "nonce": "bench-nonce"},
        "attestation": {"endpoint": "https://sharedneu.neu.attest.azure.net"},
        "identity": {"client_id": "x", "imds_endpoint": "http://127.0.0.1:9"},
        "keys": [{"vault_url": VAULT, "name": "bench-key"}],
        "queues": {"reports_url": "http://127.0.0.1:9/a/r", "commands_url": "http://127.0.0.1:9/a/c",
                   "connection_string": "DefaultEndpointsProtocol=http;AccountName=a;"
                   "AccountKey=YQ==;QueueEndpoint=http://127.0.0.1:9/a;"},
        "api": {"listen": f"127.0.0.1:{port}"},
    })
    agent = Agent.from_config(config, backend=NoTee())  # type: ignore[arg-type]
    agent.keys.put(config.keys[0], ReleasedKey(kid=KEY_ID, version="0123456789abcdef",
                                               kty="RSA-HSM", key=private, release_policy=None,
                                               attributes={}))
    return agent


def serve(port: int, key_pem: Path) -> None:
    """The agent process: holds the key, serves the API until killed."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private = load_pem_private_key(key_pem.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    agent = _agent(private, port)
    make_server(agent).run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.key)
        return
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    plaintext = os.urandom(args.size_mib << 20)
    sealed_buf = io.BytesIO()
    seal(io.BytesIO(plaintext), sealed_buf, key_id=KEY_ID,
         wrapper=PublicKeyWrapper(private.public_key()))
    sealed = sealed_buf.getvalue()

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        key_path = Path(tmp) / "key.pem"
        key_path.write_bytes(private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        process = subprocess.Popen([sys.executable, __file__, "--serve", str(port),
                                    "--key", str(key_path)])
        client = AgentClient(f"http://127.0.0.1:{port}")
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.status()
                    break
                except AgentError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            best: dict[str, float] = {}
            for _ in range(args.repeat):
                start = time.perf_counter()
                reader = open_sealed(io.BytesIO(sealed), PrivateKeyUnwrapper(private))
                local = sum(len(b) for b in reader.chunks())
                best["local"] = min(best.get("local", 1e9), time.perf_counter() - start)
                start = time.perf_counter()
                remote = sum(len(b) for b in client.decrypt_stream(io.BytesIO(sealed)))
                best["agent"] = min(best.get("agent", 1e9), time.perf_counter() - start)
                assert local == remote == len(plaintext)
        finally:
            process.terminate()
            process.wait(timeout=10)
    mib = len(plaintext) / (1 << 20)
    for name in ("local", "agent"):
        print(f"{name:6s} {mib:.0f} MiB in {best[name]:.2f}s = {mib / best[name]:.0f} MiB/s")
    print(f"agent/local throughput ratio: {best['local'] / best['agent']:.2f}")


if __name__ == "__main__":
    main()
