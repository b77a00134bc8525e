"""Ledger fixtures: migrated databases (SQLite file and real PostgreSQL) and log keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.db import make_engine, upgrade
from service.ledger import Ledger
from tests.ledger.helpers import ORIGIN


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url(pg_migrated_url: str) -> str:
    """A fresh, migrated PostgreSQL database (a clone of the session's template)."""
    return pg_migrated_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on SQLite and on real PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def log_key() -> Ed25519PrivateKey:
    """The log's signing key for the session."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
def ledger(db_url: str, log_key: Ed25519PrivateKey) -> Iterator[Ledger]:
    """A ledger on a migrated database (SQLite and PostgreSQL), closed afterwards."""
    opened = Ledger(make_engine(db_url), log_key, origin=ORIGIN, owns_engine=True)
    try:
        yield opened
    finally:
        opened.close()

