"""evx/durable.py, the one durable-file module, and that no other code writes its own."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from evx import durable

ROOT = Path(__file__).resolve().parent.parent

# Code that syncs or renames files itself, and why it cannot use evx.durable.
OWN_DURABILITY = {
    # objects are streamed in chunks with bytes_per_sync-style write-back (sync_file_range)
    "storage/filesystem.py",
    # the output folder is written relative to directory descriptors (openat; no symlink in
    # the path is ever followed), which path-based helpers cannot do
    "evx/client/outdir.py",
    # the downloaded file is fsynced before its digest is compared, then linked by outdir.py
    "evx/client/transfer.py",
}


def test_create_file_writes_whole_durable_files_once(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    durable.create_file(target, b"first", 0o600)
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        durable.create_file(target, b"second")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]  # no temporary left


def test_replace_file_swaps_the_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    durable.replace_file(target, b"old")
    durable.replace_file(target, b"new" * 100_000, 0o644)
    assert target.read_bytes() == b"new" * 100_000
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_replacing_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "ledger.jsonl"
    target.write_bytes(b"complete export\n")
    with pytest.raises(ConnectionError), durable.replacing(target) as handle:
        handle.write(b"half an exp")
        raise ConnectionError("the stream broke")
    assert target.read_bytes() == b"complete export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.jsonl"]
    with durable.replacing(target) as handle:
        handle.write(b"new export\n")
    assert target.read_bytes() == b"new export\n"


def test_fsync_directory_where_the_platform_allows_it(tmp_path: Path) -> None:
    assert durable.fsync_directory(tmp_path) is True
    assert durable.fsync_directory(tmp_path / "absent", os_name="nt") is False
    with pytest.raises(FileNotFoundError):
        durable.fsync_directory(tmp_path / "absent")


def test_write_all_writes_past_a_short_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data)[:3]))
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        durable.write_all(fd, b"0123456789")
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"0123456789"


def test_no_other_module_writes_durable_files_by_hand() -> None:
    pattern = re.compile(r"os\.(fsync|replace|link)\(")
    writers = {str(p.relative_to(ROOT)) for d in ("evx", "service", "storage", "custody")
               for p in (ROOT / d).rglob("*.py") if pattern.search(p.read_text())}
    assert writers - {"evx/durable.py"} == OWN_DURABILITY
