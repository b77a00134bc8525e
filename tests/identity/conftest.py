"""Identity fixtures: a migrated trust registry on a real SQLite file or real PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.db import make_engine, upgrade
from tests.identity.support import REVISION, Partners, Signer, register_partners, rsa_signer
from tests.support.postgres import Templates


@pytest.fixture(scope="session")
def rsa_keys() -> list[Signer]:
    """RSA generation is slow: a few key pairs for the whole session."""
    return [rsa_signer() for _ in range(2)]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets its own copy."""
    path = tmp_path_factory.mktemp("identity-template") / "evx.db"
    upgrade(f"sqlite:///{path}", REVISION)
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "evx.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database on each real backend (PostgreSQL: a clone of a session template)."""
    if request.param == "sqlite":
        yield str(request.getfixturevalue("sqlite_url"))
        return
    templates: Templates = request.getfixturevalue("pg_templates")
    with templates.clone(REVISION) as url:
        yield url


def _connection(url: str) -> Iterator[sa.Connection]:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[sa.Connection]:
    """One transaction on a migrated database (SQLite file and PostgreSQL)."""
    yield from _connection(database_url)


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[sa.Connection]:
    """One transaction on a migrated SQLite file (for the many token-attack cases)."""
    yield from _connection(sqlite_url)


@pytest.fixture
def partners(sqlite_db: sa.Connection, rsa_keys: list[Signer]) -> Partners:
    return register_partners(sqlite_db, rsa_keys[0])
