"""Key sources and the keyring: generation on first use, mounted secrets, static keys, rotation."""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.errors import KeySourceError, UnknownKey
from storage.keyring import DirectoryKeySource, Keyring, StaticKeySource


def test_directory_source_generates_a_private_key_on_first_use(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    keyring = Keyring(DirectoryKeySource(directory, create=True,
                                         now=lambda: datetime(2025, 3, 1, tzinfo=UTC)))
    key_id, secret = keyring.active_key()
    assert key_id.startswith("kek-20250301-") and len(secret) == 32
    key_file = directory / f"{key_id}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert base64.b64decode(key_file.read_bytes()) == secret
    again = Keyring(DirectoryKeySource(directory, create=True))
    assert again.active_key() == (key_id, secret)


def test_rotation_adds_an_active_key_and_keeps_the_old(tmp_path: Path) -> None:
    keyring = Keyring(DirectoryKeySource(tmp_path, create=True))
    old = keyring.active_key()
    new_id = keyring.rotate()
    assert keyring.active_key_id == new_id != old[0]
    assert keyring.find(old[0]) == old[1]
    assert Keyring(DirectoryKeySource(tmp_path)).active_key_id == new_id
    assert stat.S_IMODE((tmp_path / f"{new_id}.key").stat().st_mode) == 0o600


def test_mounted_secret_directory(tmp_path: Path) -> None:
    """A Kubernetes-style secret mount: files written by someone else, no create."""
    (tmp_path / "kek-2024.key").write_text(base64.b64encode(b"a" * 32).decode() + "\n")
    (tmp_path / "kek-2025.key").write_text(base64.b64encode(b"b" * 32).decode())
    (tmp_path / "active").write_text("kek-2025\n")
    keyring = Keyring(DirectoryKeySource(tmp_path))
    assert keyring.active_key() == ("kek-2025", b"b" * 32)
    assert keyring.key_ids == ("kek-2024", "kek-2025")
    assert keyring.get("kek-2024") == b"a" * 32


@pytest.mark.parametrize("content", [b"not base64!", base64.b64encode(b"short")])
def test_malformed_key_files(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "kek-1.key").write_bytes(content)
    (tmp_path / "active").write_text("kek-1")
    with pytest.raises(KeySourceError):
        Keyring(DirectoryKeySource(tmp_path))


def test_missing_or_dangling_active_pointer(tmp_path: Path) -> None:
    (tmp_path / "kek-1.key").write_bytes(base64.b64encode(os.urandom(32)))
    with pytest.raises(KeySourceError):
        Keyring(DirectoryKeySource(tmp_path))
    (tmp_path / "active").write_text("kek-2")
    with pytest.raises(KeySourceError):
        Keyring(DirectoryKeySource(tmp_path))


def test_missing_directory_without_create(tmp_path: Path) -> None:
    with pytest.raises(KeySourceError):
        Keyring(DirectoryKeySource(tmp_path / "absent"))


def test_static_source_is_read_only() -> None:
    keyring = Keyring(StaticKeySource({"kek-env": b"k" * 32}, "kek-env"))
    assert keyring.active_key() == ("kek-env", b"k" * 32)
    with pytest.raises(KeySourceError):
        keyring.rotate()
    with pytest.raises(UnknownKey) as info:
        keyring.get("kek-gone")
    assert type(info.value) is UnknownKey and info.value.key_ids == ("kek-gone",)
    assert keyring.find("kek-gone") is None


@pytest.mark.parametrize("keys,active", [
    ({"kek-a": b"short"}, "kek-a"),
    ({"kek-a": b"k" * 32}, "kek-b"),
    ({"bad id!": b"k" * 32}, "bad id!"),
])
def test_static_source_validates(keys: dict[str, bytes], active: str) -> None:
    with pytest.raises(ValueError):
        StaticKeySource(keys, active)


def test_key_material_never_in_repr(tmp_path: Path) -> None:
    keyring = Keyring(StaticKeySource({"kek-a": b"\x11" * 32}, "kek-a"))
    assert "11" * 4 not in repr(keyring) and "\\x11" not in repr(keyring)
