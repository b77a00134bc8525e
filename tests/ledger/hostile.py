"""A hostile database administrator: drops the append-only triggers and edits ledger rows.

Everything here writes straight to the tables, as someone with the database password would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from custody.entry import Entry
from service.ledger import tables

EntryEdit = Callable[[dict[str, Any]], None]


class HostileAdmin:
    """Direct, trigger-free write access to the ledger tables of one database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    def drop_triggers(self) -> None:
        """Drop every trigger protecting the ledger tables."""
        with self.engine.begin() as conn:
            if self.postgres:
                found = conn.execute(sa.text(
                    "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c "
                    "ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND c.relname LIKE 'ledger_%'"
                )).all()
                assert found, "expected the migration's triggers"
                for name, table in found:
                    conn.exec_driver_sql(f'DROP TRIGGER "{name}" ON "{table}"')
            else:
                found = conn.execute(sa.text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'")).all()
                assert found, "expected the migration's triggers"
                for (name,) in found:
                    conn.exec_driver_sql(f'DROP TRIGGER "{name}"')

    def leaf(self, conn: sa.Connection, index: int) -> bytes:
        return bytes(conn.execute(sa.select(tables.entries.c.leaf_hash)
                                  .where(tables.entries.c.idx == index)).scalar_one())

    def edit_entry(self, index: int, edit: EntryEdit, *, rehash: bool) -> Entry:
        """Change entry ``index``'s canonical text (re-canonicalized, so it stays a valid entry);
        with ``rehash`` also its stored leaf hash. Returns the forged entry."""
        with self.engine.begin() as conn:
            text = conn.execute(sa.select(tables.entries.c.canonical)
                                .where(tables.entries.c.idx == index)).scalar_one()
            data = json.loads(text)
            edit(data)
            forged = Entry.from_dict(data)
            values: dict[str, Any] = {"canonical": forged.canonical_bytes().decode()}
            if rehash:
                values["leaf_hash"] = forged.leaf_hash()
            conn.execute(tables.entries.update().where(tables.entries.c.idx == index)
                         .values(**values))
        return forged

    def set_column(self, index: int, **values: Any) -> None:
        """Change query columns of entry ``index`` only."""
        with self.engine.begin() as conn:
            conn.execute(tables.entries.update().where(tables.entries.c.idx == index)
                         .values(**values))

    def delete_entry(self, index: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(tables.entries.delete().where(tables.entries.c.idx == index))

    def swap(self, first: int, second: int) -> None:
        """Exchange the positions of two entries (their rows' index)."""
        idx = tables.entries.c.idx
        with self.engine.begin() as conn:
            conn.execute(tables.entries.update().where(idx == first).values(idx=-1))
            conn.execute(tables.entries.update().where(idx == second).values(idx=first))
            conn.execute(tables.entries.update().where(idx == -1).values(idx=second))

    def insert_forged(self, at: int, template: int) -> Entry:
        """Slip a forged entry in at position ``at``, chained correctly to the entry before it,
        moving every later entry one place up. The forgery copies entry ``template``."""
        idx = tables.entries.c.idx
        with self.engine.begin() as conn:
            # Two steps through negative numbers: no intermediate primary-key collision.
            conn.execute(tables.entries.update().where(idx >= at).values(idx=-idx - 2))
            conn.execute(tables.entries.update().where(idx < 0).values(idx=-idx - 1))
            source = json.loads(conn.execute(sa.select(tables.entries.c.canonical)
                                             .where(idx == template)).scalar_one())
            package_prev = None
            if source["package"] is not None:
                previous = conn.execute(
                    sa.select(tables.entries.c.leaf_hash)
                    .where(tables.entries.c.package == source["package"], idx < at)
                    .order_by(idx.desc()).limit(1)).scalar_one_or_none()
                package_prev = bytes(previous).hex() if previous is not None else None
            source.update(index=at, prev=self.leaf(conn, at - 1).hex(),
                          package_prev=package_prev, reason="forged", outcome="denied")
            forged = Entry.from_dict(source)
            conn.execute(tables.entries.insert().values(
                idx=at, leaf_hash=forged.leaf_hash(), canonical=forged.canonical_bytes().decode(),
                time=forged.timestamp, package=forged.package, action=forged.action.value,
                outcome=forged.outcome.value, authority=forged.actor.authority))
            conn.execute(tables.head.update().values(size=tables.head.c.size + 1))
        return forged

    def truncate_tail(self, size: int, *, drop_checkpoints: bool) -> None:
        """Cut the log back to ``size`` entries, consistently: entries, nodes, heads."""
        with self.engine.begin() as conn:
            conn.execute(tables.entries.delete().where(tables.entries.c.idx >= size))
            level, node_index = tables.nodes.c.level, tables.nodes.c.node_index
            # Node (L, i) covers leaves [i * 2^L, (i + 1) * 2^L): drop those reaching past size.
            for lvl in range(32):  # test ledgers are far below 2**32 entries
                conn.execute(tables.nodes.delete().where(
                    level == lvl, (node_index + 1) * (2 ** lvl) > size))
            conn.execute(tables.head.update().values(
                size=size, last_leaf_hash=self.leaf(conn, size - 1)))
            conn.execute(tables.package_heads.delete())
            heads: dict[str, dict[str, Any]] = {}
            for index, package, leaf in conn.execute(
                    sa.select(tables.entries.c.idx, tables.entries.c.package,
                              tables.entries.c.leaf_hash)
                    .where(tables.entries.c.package.is_not(None))
                    .order_by(tables.entries.c.idx)):
                count = heads.get(package, {"count": 0})["count"] + 1
                heads[package] = {"package": package, "last_index": index,
                                  "last_leaf_hash": leaf, "count": count}
            if heads:
                conn.execute(tables.package_heads.insert(), list(heads.values()))
            if drop_checkpoints:
                conn.execute(tables.checkpoints.delete())

    def wipe(self, *, drop_checkpoints: bool) -> None:
        """Empty the ledger, to rebuild a history of one's choosing through the normal API."""
        with self.engine.begin() as conn:
            for table in (tables.entries, tables.nodes, tables.package_heads):
                conn.execute(table.delete())
            conn.execute(tables.head.update().values(size=0, last_leaf_hash=None))
            if drop_checkpoints:
                conn.execute(tables.checkpoints.delete())
