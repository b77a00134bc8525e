"""The database itself refuses to rewrite ledger history (triggers of migration 0001_ledger).

Rows are inserted raw here: the triggers must hold whatever wrote the rows.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from service.db import make_engine
from service.ledger import tables

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
HASH = b"\x11" * 32


def _seed(conn: sa.Connection) -> None:
    conn.execute(tables.entries.insert().values(
        idx=0, leaf_hash=HASH, canonical="{}", time=NOW, package="p", action="package.created",
        outcome="allowed", authority="A"))
    conn.execute(tables.nodes.insert().values(level=0, node_index=0, hash=HASH))
    conn.execute(tables.checkpoints.insert().values(
        tree_size=1, root=HASH, note="note", created_at=NOW))


UPDATES = {
    "ledger_entries": "UPDATE ledger_entries SET outcome = 'denied'",
    "ledger_nodes": "UPDATE ledger_nodes SET node_index = 7",
    "ledger_checkpoints": "UPDATE ledger_checkpoints SET tree_size = 0",
}


def _refused(engine: sa.Engine, sql: str) -> sa.exc.DBAPIError:
    with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
        conn.exec_driver_sql(sql)
    return caught.value


@pytest.mark.parametrize("table", tables.APPEND_ONLY_TABLES)
def test_update_and_delete_refused(db_url: str, table: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        _seed(conn)
    postgres = engine.dialect.name == "postgresql"
    for operation, sql in (("UPDATE", UPDATES[table]), ("DELETE", f"DELETE FROM {table}")):
        error = _refused(engine, sql)
        assert isinstance(error, sa.exc.IntegrityError)
        expected = f"{table} is append-only: {operation} refused"
        if postgres:
            assert error.orig.sqlstate == "23001"  # type: ignore[union-attr]
            assert str(error.orig).splitlines()[0] == expected
        else:
            assert str(error.orig) == expected
    with engine.connect() as conn:  # nothing changed
        assert conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar() == 1
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("table", (*tables.APPEND_ONLY_TABLES, "ledger_head"))
def test_truncate_refused_on_postgresql(postgres_url: str, table: str) -> None:
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        _seed(conn)
    error = _refused(engine, f"TRUNCATE {table}")
    assert isinstance(error, sa.exc.IntegrityError)
    assert error.orig.sqlstate == "23001"  # type: ignore[union-attr]
    assert str(error.orig).splitlines()[0] == f"{table} is append-only: TRUNCATE refused"
    engine.dispose()


def test_head_only_moves_forward(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ledger_head SET size = 5"))
    postgres = engine.dialect.name == "postgresql"
    for operation, sql in (("UPDATE", "UPDATE ledger_head SET size = 4"),
                           ("DELETE", "DELETE FROM ledger_head")):
        error = _refused(engine, sql)
        assert isinstance(error, sa.exc.IntegrityError)
        message = str(error.orig).splitlines()[0]
        assert message == f"ledger_head only moves forward: {operation} refused"
        if postgres:
            assert error.orig.sqlstate == "23001"  # type: ignore[union-attr]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT size FROM ledger_head")).scalar() == 5
    engine.dispose()
