"""`cotenant data encrypt|inspect|decrypt|reseal` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from cotenant.cli.main import build_app
from tests.crypto.conftest import rsa_key
from tests.crypto.sealing import KEY_ID
from tests.crypto.test_legacy import legacy_file

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "contoso-data.csv"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key = rsa_key(2048)
    private = tmp_path / "kek.pem"
    public = tmp_path / "kek.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def run(*args: str):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def test_encrypt_inspect_decrypt(tmp_path: Path, keys) -> None:
    private, public = keys
    plain = tmp_path / "contoso.csv"
    plain.write_bytes(DATA.read_bytes() if DATA.exists() else b"name,age\nada,36\n")
    result = run(
        "data",
        "encrypt",
        plain,
        "--key-id",
        KEY_ID,
        "--public-key",
        public,
        "--content-type",
        "text/csv",
        "--chunk-size",
        "4096",
        "--progress",
    )
    assert result.exit_code == 0, result.output
    sealed = tmp_path / "contoso.csv.sealed"
    assert plain.read_bytes() not in sealed.read_bytes()

    shown = run("data", "inspect", sealed, "--json")
    assert shown.exit_code == 0
    facts = json.loads(shown.stdout)
    assert facts["key_id"] == KEY_ID and facts["content_type"] == "text/csv"
    assert facts["plaintext_length"] == plain.stat().st_size
    assert facts["sealed_size"] == sealed.stat().st_size
    assert "BEGIN" not in shown.stdout

    table = run("data", "inspect", sealed)
    assert table.exit_code == 0 and "RSA-OAEP-256" in table.stdout

    out = tmp_path / "roundtrip.csv"
    result = run("data", "decrypt", sealed, "--private-key", private, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == plain.read_bytes()

    to_stdout = run("data", "decrypt", sealed, "--private-key", private, "-o", "-")
    assert to_stdout.stdout_bytes == plain.read_bytes()


def test_decrypt_failure_leaves_no_output(tmp_path: Path, keys) -> None:
    private, public = keys
    plain = tmp_path / "p.bin"
    plain.write_bytes(b"z" * 10_000)
    assert (
        run(
            "data",
            "encrypt",
            plain,
            "--key-id",
            KEY_ID,
            "--public-key",
            public,
            "--chunk-size",
            "1024",
        ).exit_code
        == 0
    )
    sealed = tmp_path / "p.bin.sealed"
    blob = bytearray(sealed.read_bytes())
    blob[-5000] ^= 0x40
    sealed.write_bytes(bytes(blob))
    result = run("data", "decrypt", sealed, "--private-key", private, "-o", tmp_path / "o.bin")
    assert result.exit_code == 2
    assert result.output.startswith("error: chunk ") and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["kek.pem", "kek.pub.pem", "p.bin", "p.bin.sealed"]
    )


def test_clear_errors(tmp_path: Path, keys) -> None:
    private, public = keys
    plain = tmp_path / "p.txt"
    plain.write_text("hello")
    unversioned = run(
        "data",
        "encrypt",
        plain,
        "--key-id",
        "https://kv.vault.azure.net/keys/k",
        "--public-key",
        public,
    )
    assert unversioned.exit_code == 2 and "no version" in unversioned.output
    not_sealed = run("data", "inspect", plain)
    assert not_sealed.exit_code == 2 and "not a cotenant sealed file" in not_sealed.output
    assert run("data", "encrypt", plain, "--key-id", KEY_ID, "--public-key", public).exit_code == 0
    wrong = run("data", "decrypt", tmp_path / "p.txt.sealed", "--private-key", public)
    assert wrong.exit_code == 2 and "private key" in wrong.output
    assert len(wrong.output.strip().splitlines()) == 1


def test_reseal_legacy(tmp_path: Path, keys) -> None:
    private, public = keys
    data = b"Pregnancies,Glucose,Outcome\n6,148,1\n" * 100
    blob, _, wrapped = legacy_file(data)
    legacy = tmp_path / "diabetes.enc"
    legacy.write_bytes(blob)
    (tmp_path / "wrapped.bin").write_bytes(wrapped)
    legacy_pem = tmp_path / "legacy.pem"
    legacy_pem.write_bytes(
        rsa_key(2048, slot=1).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    def reseal(output: Path):
        return run("data", "reseal", legacy, "--key-id", KEY_ID,
                   "--wrapped-key", tmp_path / "wrapped.bin", "--private-key", legacy_pem,
                   "--public-key", public, "-o", output)  # fmt: skip

    result = reseal(tmp_path / "diabetes.sealed")
    assert result.exit_code == 0, result.output
    out = tmp_path / "diabetes.csv"
    decrypted = run("data", "decrypt", tmp_path / "diabetes.sealed", "--private-key", private,
                    "-o", out)  # fmt: skip
    assert decrypted.exit_code == 0
    assert out.read_bytes() == data

    blob_tampered = bytearray(blob)
    blob_tampered[50] ^= 1
    legacy.write_bytes(bytes(blob_tampered))
    failed = reseal(tmp_path / "bad.sealed")
    assert failed.exit_code == 2 and "legacy file failed authentication" in failed.output
    assert not (tmp_path / "bad.sealed").exists()
