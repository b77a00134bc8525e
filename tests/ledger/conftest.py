"""Ledger fixtures: migrated databases (SQLite file and real PostgreSQL) and log keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.db import upgrade

ORIGIN = "evidence-exchange.test/log"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url(pg_url: str) -> str:
    """A fresh, migrated PostgreSQL database."""
    upgrade(pg_url)
    return pg_url


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
