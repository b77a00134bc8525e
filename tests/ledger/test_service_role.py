"""Least privilege in the database (review I5 and the DB-role finding): on PostgreSQL the
service connects as a member of ``evx_service`` (migration 0007), which cannot drop or disable
the ledger's triggers, update or delete an entry, or truncate the ledger tables -- and can still
do everything the service does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service.db import upgrade
from service.settings import Settings

pytestmark = pytest.mark.postgres  # the role is a real PostgreSQL role

LEDGER_TABLES = ("ledger_entries", "ledger_nodes", "ledger_checkpoints", "ledger_head",
                 "ledger_package_heads")


@pytest.fixture
def service_url(pg_migrated_url: str) -> Iterator[str]:
    """The migrated database, and a URL for a fresh login role that is a member of
    ``evx_service`` (trust authentication on the test server: no password)."""
    pg_url = pg_migrated_url
    login = f"evx_svc_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {login} LOGIN IN ROLE evx_service"))
    try:
        yield make_url(pg_url).set(username=login, password=None).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {login}"))
            conn.execute(sa.text(f"DROP ROLE {login}"))
        admin.dispose()


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _refused(url: str, statement: str) -> None:
    with (
        psycopg.connect(_libpq(url), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_nodes", "ledger_checkpoints"])
def test_the_service_role_cannot_touch_the_append_only_tables(service_url: str,
                                                              table: str) -> None:
    _refused(service_url, f"UPDATE {table} SET {_first_column(service_url, table)} = "
                          f"{_first_column(service_url, table)}")
    _refused(service_url, f"DELETE FROM {table}")
    _refused(service_url, f"TRUNCATE {table}")
    _refused(service_url, f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    _refused(service_url, f"DROP TABLE {table}")


def test_the_service_role_cannot_drop_or_disable_a_trigger(service_url: str) -> None:
    with psycopg.connect(_libpq(service_url), autocommit=True) as conn:
        triggers = conn.execute(
            "SELECT tgname, relname FROM pg_trigger JOIN pg_class ON tgrelid = pg_class.oid "
            "WHERE NOT tgisinternal AND relname LIKE 'ledger_%'").fetchall()
    assert triggers, "the ledger has triggers to protect"
    for trigger, table in triggers:
        _refused(service_url, f"DROP TRIGGER {trigger} ON {table}")
        _refused(service_url, f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
    for table in LEDGER_TABLES:
        _refused(service_url, f"TRUNCATE {table}")
        _refused(service_url, f"ALTER TABLE {table} OWNER TO CURRENT_USER")


def test_the_service_role_cannot_rewrite_the_schema_history(service_url: str) -> None:
    _refused(service_url, "UPDATE alembic_version SET version_num = 'x'")
    _refused(service_url, "CREATE TABLE public.intruder (x int)")


def test_the_service_runs_as_that_role(service_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.identity.issuer import create_authority, mint_token
    from service.runtime import build_runtime

    upgrade(service_url)  # at the head already: a no-op the service role may run
    settings = Settings(data_dir=tmp_path / "data", database_url=service_url,
                        auto_migrate=False, operator_authority="EU-OPERATOR")
    runtime = build_runtime(settings)
    try:
        # The registry is the operator's business: written as the owner (`evx authority add`).
        owner_engine = sa.create_engine(_owner_url(service_url))
        with owner_engine.begin() as conn:
            create_authority(conn, "DE-BKA", name="BKA", country="DE",
                             roles=("investigator",), data_dir=settings.data_dir)
            token = mint_token(conn, settings.data_dir, "DE-BKA", subject="anna",
                               role="investigator", audience=settings.audience)
        owner_engine.dispose()
        with TestClient(create_app(settings, runtime)) as client:
            headers = {"Authorization": f"Bearer {token}"}
            r = client.post("/v1/packages", headers=headers,
                            json={"case_reference": "C-1", "title": "t"})
            assert r.status_code == 201, r.text
            package_id = r.json()["id"]
            r = client.put(f"/v1/packages/{package_id}/items/a.txt", content=b"evidence",
                           headers=headers)
            assert r.status_code == 201, r.text
            assert client.post(f"/v1/packages/{package_id}/seal",
                               headers=headers).status_code == 200
            assert client.get("/readyz").status_code == 200
        assert runtime.ledger.tree_size() == 3  # created, uploaded, sealed
    finally:
        runtime.close()


def _owner_url(service_url: str) -> str:
    return make_url(service_url).set(username="postgres").render_as_string(hide_password=False)


def _first_column(url: str, table: str) -> str:
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        (name,) = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position LIMIT 1", (table,)).fetchone()
    return str(name)
