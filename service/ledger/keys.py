"""The log's Ed25519 signing key, kept in a PEM (PKCS#8) file generated on first use."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evx import durable
from service.ledger.errors import LogKeyError

#: Owner read/write only: the key signs every checkpoint of the custody log.
KEY_FILE_MODE = 0o600
#: Bound on what is read from the key file (a PEM Ed25519 key is ~120 bytes).
MAX_KEY_FILE_BYTES = 16 * 1024


def load_or_create_log_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the Ed25519 private key at ``path``; generate it (mode 0600) if the file is missing.

    Creation is atomic and race-free across processes: the key is written to a private temporary
    file, fsynced, then hard-linked into place, so a concurrent starter either wins or loads the
    winner's complete key. Raises :class:`LogKeyError` if the file is unreadable, not an Ed25519
    PEM key, or writable by group/others (someone else could substitute the log's identity).
    """
    key_path = Path(path)
    if not key_path.exists():
        _create(key_path)
    return load_log_key(key_path)


def load_log_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load an existing Ed25519 private key (PEM, PKCS#8, unencrypted). Raises LogKeyError."""
    key_path = Path(path)
    try:
        with key_path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise LogKeyError(f"cannot read log key file {key_path}: {exc.strerror}") from exc
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LogKeyError(f"log key file {key_path} is writable by group or others")
    if len(data) > MAX_KEY_FILE_BYTES:
        raise LogKeyError(f"log key file {key_path} is larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise LogKeyError(f"log key file {key_path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise LogKeyError(f"log key file {key_path} does not hold an Ed25519 key")
    return key


def _create(key_path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        durable.create_file(key_path, pem, KEY_FILE_MODE)
    except FileExistsError:
        pass  # another process created it first: theirs is loaded
    except OSError as exc:
        raise LogKeyError(f"cannot create log key file {key_path}: {exc.strerror}") from exc
