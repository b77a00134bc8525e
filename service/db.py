"""Database plumbing shared by every table of the service: one ``MetaData``, engines, migrations.

Tables live beside the code that owns them (``service/ledger/tables.py``, ...), all on
:data:`metadata`, so one naming convention gives every constraint a stable name that Alembic
migrations can refer to. Schema changes happen only through Alembic (:func:`upgrade`).
"""

from __future__ import annotations

import importlib.util
import os
from datetime import UTC
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

#: Constraint names are deterministic so migrations can create and drop them by name.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: How long an SQLite writer waits for the file lock before giving up (milliseconds).
SQLITE_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes of WAL kept after a checkpoint
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Execution option naming the SQLite BEGIN flavour ("DEFERRED", "IMMEDIATE", "EXCLUSIVE").
#: The ledger appends under ``BEGIN IMMEDIATE`` so writers serialize before they read the head.
SQLITE_BEGIN = "sqlite_begin"

_SQLITE_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


def normalize_url(url: str | sa.URL) -> sa.URL:
    """Return ``url`` as a URL object, with PostgreSQL pinned to the psycopg 3 driver."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _private_sqlite_file(database: str | None) -> None:
    """The database file (and a folder made for it) readable by this user only, whichever
    command creates it first (review L3: `evx authority add` before `evx serve` left 0755/0644)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def make_engine(url: str | sa.URL, **kwargs: Any) -> Engine:
    """Create an engine with the durability settings the custody ledger relies on.

    SQLite: WAL journal, ``foreign_keys=ON``, a busy timeout, ``synchronous=FULL`` (a commit is on
    disk before it returns), and transactions begun explicitly by SQLAlchemy (the stdlib driver's
    own implicit BEGIN is switched off) so ``BEGIN IMMEDIATE`` can be requested per connection with
    ``conn.execution_options(sqlite_begin="IMMEDIATE")``.

    PostgreSQL: psycopg 3, ``synchronous_commit=on`` for every session.
    Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        _private_sqlite_file(parsed.database)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        engine = sa.create_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("options", "-c synchronous_commit=on")
        kwargs.setdefault("pool_pre_ping", True)
        return sa.create_engine(parsed, **kwargs)
    raise ValueError(f"unsupported database backend {backend!r} (use sqlite or postgresql)")


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (see the "begin" hook below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=FULL")
            # The write-ahead log is truncated to this after each checkpoint instead of keeping
            # its high-water mark (review I8: a flood left a 90 MB log beside a 2.8 MB file).
            cursor.execute(f"PRAGMA journal_size_limit={SQLITE_JOURNAL_SIZE_LIMIT}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = str(conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        if mode == "DEFERRED":
            # Straight to the driver: through exec_driver_sql (an execution context, events, a
            # result) this BEGIN cost a tenth of a metadata read's CPU. A deferred BEGIN takes
            # no lock, so it cannot fail on one (errors of the others stay SQLAlchemy's).
            driver = conn.connection.driver_connection
            assert driver is not None  # a checked-out connection has its DBAPI connection
            driver.execute("BEGIN DEFERRED")
        else:
            conn.exec_driver_sql(f"BEGIN {mode}")


def as_utc(value: Any) -> Any:
    """``value`` as an aware UTC datetime if it is a naive one (SQLite keeps no offset; everything
    stored is UTC); anything else unchanged."""
    from datetime import datetime

    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def migrations_dir() -> Path:
    """Directory of the installed ``migrations`` package (Alembic ``script_location``)."""
    spec = importlib.util.find_spec("migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'migrations' package is not importable; install evidence-exchange")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def alembic_config(url: str | sa.URL) -> Any:
    """An Alembic ``Config`` for ``url`` that works from any working directory."""
    from alembic.config import Config

    directory = migrations_dir()
    config = Config(str(directory / "alembic.ini"))
    config.set_main_option("script_location", str(directory))
    # Passed as an attribute, not an ini option: URLs may contain '%' (interpolation syntax).
    config.attributes["url"] = normalize_url(url)
    return config


def upgrade(url: str | sa.URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (default: the newest)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | sa.URL, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` for an empty schema)."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def schema_revision(engine: Engine) -> tuple[str | None, str]:
    """The database's current Alembic revision and the code's head revision."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(engine.url)).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, str(head)
