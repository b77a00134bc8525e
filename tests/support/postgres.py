"""Real PostgreSQL databases for tests and benchmarks: created, cloned from a template, dropped.

Migrating a database with Alembic costs far more than copying one: :class:`Templates` migrates
a database once per session (per revision) and every test gets a clone of it
(``CREATE DATABASE ... TEMPLATE``, a file-level copy inside the server), as warehouse gives each
test a clean database without rebuilding the schema.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def _quoted(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a database name this helper makes: {name!r}")
    return f'"{name}"'


def database_url(server_url: str, name: str) -> str:
    """``server_url`` (any database of the server) pointing at database ``name`` instead."""
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, prefix: str = "evx_test", template: str | None = None) -> str:
    """Create an empty database (or a copy of ``template``); return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            copy = f" TEMPLATE {_quoted(template)}" if template else ""
            conn.execute(sa.text(f"CREATE DATABASE {_quoted(name)}{copy}"))
    finally:
        admin.dispose()
    return database_url(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database at ``url``, ending any session still connected to it."""
    name = sa.make_url(url).database
    assert name is not None
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {_quoted(name)}"))
    finally:
        admin.dispose()


@contextmanager
def fresh_database(server_url: str, prefix: str = "evx_test",
                   template: str | None = None) -> Iterator[str]:
    """A database for the ``with`` block (empty, or a copy of ``template``), dropped after it."""
    url = create_database(server_url, prefix, template)
    try:
        yield url
    finally:
        drop_database(server_url, url)


class Templates:
    """Databases migrated once (one per Alembic revision), to be cloned by :meth:`clone`.

    The names are random, so sessions running side by side on one server never share one.
    """

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._by_revision: dict[str, str] = {}
        self._lock = threading.Lock()

    def name(self, revision: str = "head") -> str:
        """The template database at ``revision``, migrated the first time it is asked for."""
        from service.db import upgrade

        with self._lock:
            if revision not in self._by_revision:
                url = create_database(self.server_url, "evx_template")
                try:
                    upgrade(url, revision)
                except BaseException:
                    drop_database(self.server_url, url)
                    raise
                name = sa.make_url(url).database
                assert name is not None
                self._by_revision[revision] = name
            return self._by_revision[revision]

    @contextmanager
    def clone(self, revision: str = "head", prefix: str = "evx_test") -> Iterator[str]:
        """A copy of the template at ``revision`` for the ``with`` block, dropped after it."""
        with fresh_database(self.server_url, prefix, template=self.name(revision)) as url:
            yield url

    def drop_all(self) -> None:
        with self._lock:
            for name in self._by_revision.values():
                drop_database(self.server_url, database_url(self.server_url, name))
            self._by_revision.clear()
