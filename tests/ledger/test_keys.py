"""The log key file: generated once (0600), loaded afterwards, refused when unsafe or invalid."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.ledger.errors import LogKeyError
from service.ledger.keys import load_log_key, load_or_create_log_key


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_generates_key_with_owner_only_mode_then_loads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "log.key"
    first = load_or_create_log_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _raw_public(load_or_create_log_key(path)) == _raw_public(first)
    assert [p.name for p in path.parent.iterdir()] == ["log.key"]  # no temporary left behind


def test_refuses_group_writable_key_file(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    load_or_create_log_key(path)
    os.chmod(path, 0o620)
    with pytest.raises(LogKeyError, match="writable by group or others"):
        load_log_key(path)


def test_refuses_garbage_and_missing(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"not a key")
    os.chmod(garbage, 0o600)
    with pytest.raises(LogKeyError, match="not an unencrypted PEM private key"):
        load_log_key(garbage)
    with pytest.raises(LogKeyError, match="cannot read"):
        load_log_key(tmp_path / "missing.key")
