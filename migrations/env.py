"""Alembic environment: online migrations through :func:`service.db.make_engine`.

The URL comes from ``config.attributes["url"]`` (set by :func:`service.db.upgrade`) or from
``-x url=...`` on the alembic command line.
"""

from __future__ import annotations

from alembic import context

from service.db import make_engine, metadata

config = context.config
target_metadata = metadata


def _url() -> object:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise RuntimeError("no database URL: call service.db.upgrade(url) or pass -x url=...")
    return url


def run_migrations_online() -> None:
    """Run every pending migration in one transaction per migration script."""
    engine = make_engine(_url())  # type: ignore[arg-type]
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                transaction_per_migration=True,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; the ledger's "
                       "triggers are dialect-specific")
run_migrations_online()
