"""Review L3: whichever command creates the SQLite database first, only its user can read it."""

from __future__ import annotations

import stat
from pathlib import Path

import sqlalchemy as sa

from service.db import make_engine


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_file_and_folder_are_private(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "evidence.db"
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        conn.execute(sa.text("select 1"))
    engine.dispose()
    assert _mode(db.parent) == 0o700
    assert _mode(db) == 0o600


def test_an_existing_readable_database_file_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "evidence.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    make_engine(f"sqlite:///{db}").dispose()
    assert _mode(db) == 0o600
