"""`cotenant data encrypt|inspect|decrypt|reseal`: sealed data files for the data owner.

Encryption happens locally: a fresh data key per file, wrapped with the party's key-encryption
key (RSA-OAEP-256) either locally with its public half (``--public-key`` PEM, or fetched once
from Key Vault) or by Key Vault's wrapKey (``--vault-wrap``). Outputs are written to a temporary
file beside the target and renamed only when complete, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import typer
from azure.core.exceptions import AzureError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from cotenant.crypto.envelope import (
    DEFAULT_CHUNK_SIZE,
    SealedHeader,
    open_sealed,
    read_header,
    seal,
)
from cotenant.crypto.errors import CryptoError
from cotenant.crypto.legacy import read_wrapped_key, reseal_legacy, unwrap_legacy_key
from cotenant.crypto.wrapping import (
    KeyVaultWrapper,
    KeyWrapper,
    PrivateKeyUnwrapper,
    PublicKeyWrapper,
    load_private_key,
)

app = typer.Typer(
    help="Sealed data files: encrypt locally, inspect, decrypt (tests/lab), re-seal legacy files.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)
PROGRESS_THRESHOLD = 16 << 20


class _Failure(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _fail(message: str) -> None:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (CryptoError, _Failure) as exc:
        _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
    except AzureError as exc:
        _fail(f"Azure: {getattr(exc, 'message', None) or type(exc).__name__}")
    except ValueError as exc:
        _fail(str(exc))


@contextlib.contextmanager
def _atomic_output(target: Path) -> Iterator[BinaryIO]:
    """Write to a temporary file beside ``target``; rename into place only on success."""
    target = target.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _progress(
    size: int | None, label: str, enabled: bool | None
) -> Iterator[Callable[[int], None] | None]:
    show = enabled if enabled is not None else (size or 0) >= PROGRESS_THRESHOLD
    if not show:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=size)
        yield lambda n: progress.advance(task, n)


def _wrapper(public_key: Path | None, vault_wrap: bool) -> KeyWrapper:
    if public_key is not None:
        if vault_wrap:
            raise _Failure("--public-key and --vault-wrap exclude each other")
        return PublicKeyWrapper.from_pem(public_key)
    from azure.identity import DefaultAzureCredential

    return KeyVaultWrapper(DefaultAzureCredential(), local=not vault_wrap)


def _said(message: str) -> None:
    err.print(message, markup=False, highlight=False, soft_wrap=True)


SealFn = Callable[[BinaryIO, BinaryIO, Callable[[int], None] | None], SealedHeader]


def _write_sealed(
    file: Path, target: Path, label: str, progress: bool | None, fn: SealFn
) -> SealedHeader:
    """Run ``fn(src, dst, tick)`` from ``file`` into ``target`` atomically, with progress."""
    with (
        file.open("rb") as src,
        _atomic_output(target) as dst,
        _progress(file.stat().st_size, label, progress) as tick,
    ):
        return fn(src, dst, tick)


def _show_header(header: SealedHeader, path: Path, as_json: bool) -> None:
    facts = header.describe()
    if as_json:
        out.print_json(json.dumps({"file": str(path), **facts}))
        return
    table = Table(title=f"sealed file {path.name}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in facts.items():
        table.add_row(name.replace("_", " "), "-" if value is None else str(value))
    out.print(table)


ProgressOpt = typer.Option(
    None, "--progress/--no-progress", help="Progress bar (default: for files of 16 MiB or more)."
)
KeyIdOpt = typer.Option(
    ..., "--key-id", help="Full versioned Key Vault key id of the party's key-encryption key."
)
PublicKeyOpt = typer.Option(
    None, "--public-key", help="PEM public key (or certificate) of that key; wraps locally."
)
VaultWrapOpt = typer.Option(
    False, "--vault-wrap", help="Wrap with Key Vault's wrapKey instead of locally."
)


@app.command("encrypt")
def encrypt(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Plaintext file."),
    key_id: str = KeyIdOpt,
    public_key: Path | None = PublicKeyOpt,
    vault_wrap: bool = VaultWrapOpt,
    output: Path | None = typer.Option(None, "-o", "--output", help="Default: FILE.sealed"),
    content_type: str | None = typer.Option(None, "--content-type", help="e.g. text/csv"),
    chunk_size: int = typer.Option(DEFAULT_CHUNK_SIZE, "--chunk-size", help="Bytes per chunk."),
    progress: bool | None = ProgressOpt,
) -> None:
    """Seal FILE with a fresh data key wrapped by the party's key (RSA-OAEP-256)."""
    target = output or file.with_name(file.name + ".sealed")
    with _errors():
        wrapper = _wrapper(public_key, vault_wrap)
        header = _write_sealed(
            file,
            target,
            "sealing",
            progress,
            lambda src, dst, tick: seal(
                src,
                dst,
                key_id=key_id,
                wrapper=wrapper,
                content_type=content_type,
                chunk_size=chunk_size,
                progress=tick,
            ),
        )
    _said(f"sealed {file} -> {target} for {header.key_id}")


@app.command("inspect")
def inspect(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Sealed file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a sealed file's header facts (never key material)."""
    with _errors(), file.open("rb") as src:
        header = read_header(src)
    _show_header(header, file, as_json)


def _default_plain_name(file: Path) -> Path:
    if file.suffix == ".sealed":
        return file.with_suffix("")
    return file.with_name(file.name + ".plain")


@app.command("decrypt")
def decrypt(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Sealed file."),
    private_key: Path = typer.Option(..., "--private-key", help="PEM private key (tests/lab)."),
    output: str | None = typer.Option(
        None, "-o", "--output", help="Default: FILE without .sealed; '-' for stdout."
    ),
    progress: bool | None = ProgressOpt,
) -> None:
    """Decrypt and verify a sealed file with a software private key (for tests and the lab)."""
    with _errors():
        unwrapper = PrivateKeyUnwrapper(load_private_key(private_key))
        with file.open("rb") as src:
            reader = open_sealed(src, unwrapper)
            if output == "-":
                for chunk in reader.chunks():
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                return
            target = Path(output) if output else _default_plain_name(file)
            with (
                _atomic_output(target) as dst,
                _progress(reader.header.plaintext_length, "decrypting", progress) as tick,
            ):
                for chunk in reader.chunks():
                    dst.write(chunk)
                    if tick is not None:
                        tick(len(chunk))
    _said(f"decrypted {file} -> {target}")


def _legacy_data_key(
    wrapped_key: Path | None, private_key: Path | None, data_key: Path | None, key_id: str
) -> bytes:
    if data_key is not None:
        if private_key is not None or wrapped_key is not None:
            raise _Failure("--data-key excludes --wrapped-key/--private-key")
        raw = data_key.read_bytes()
        if len(raw) != 32:
            raise _Failure(f"{data_key} must hold the 32-byte data key")
        return raw
    if wrapped_key is None or private_key is None:
        raise _Failure("give --wrapped-key with --private-key, or --data-key")
    unwrapper = PrivateKeyUnwrapper(load_private_key(private_key))
    return unwrap_legacy_key(read_wrapped_key(wrapped_key), unwrapper, key_id=key_id)


@app.command("reseal")
def reseal(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Legacy file: 12-byte nonce | ciphertext | tag."
    ),
    key_id: str = KeyIdOpt,
    wrapped_key: Path | None = typer.Option(
        None, "--wrapped-key", help="The legacy data key wrapped with RSA-OAEP-256 (raw/base64)."
    ),
    private_key: Path | None = typer.Option(
        None, "--private-key", help="PEM private key that unwraps --wrapped-key."
    ),
    data_key: Path | None = typer.Option(None, "--data-key", help="The raw 32-byte data key."),
    public_key: Path | None = PublicKeyOpt,
    vault_wrap: bool = VaultWrapOpt,
    output: Path | None = typer.Option(None, "-o", "--output", help="Default: FILE.sealed"),
    content_type: str | None = typer.Option(None, "--content-type"),
    progress: bool | None = ProgressOpt,
) -> None:
    """Re-seal a file in the tutorial's legacy format into the sealed format (streaming)."""
    target = output or file.with_name(file.name + ".sealed")
    with _errors():
        key = _legacy_data_key(wrapped_key, private_key, data_key, key_id)
        wrapper = _wrapper(public_key, vault_wrap)
        header = _write_sealed(
            file,
            target,
            "re-sealing",
            progress,
            lambda src, dst, tick: reseal_legacy(
                src,
                dst,
                data_key=key,
                key_id=key_id,
                wrapper=wrapper,
                content_type=content_type,
                progress=tick,
            ),
        )
    _said(f"re-sealed {file} -> {target} for {header.key_id}")
