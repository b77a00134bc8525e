"""`evx serve` and `evx db upgrade`: run the service and migrate its database."""

from __future__ import annotations

import typer

from evx.cli.app import PANEL_SERVER, command, group
from evx.client.errors import UsageError

group("db", "Database schema management.", panel=PANEL_SERVER)


@command("serve", server=True, panel=PANEL_SERVER)
def serve(
    host: str = typer.Option(None, help="Listen address (default EVX_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Listen port (default EVX_PORT or 8000)."),
) -> None:
    """Start the API on the configured backends (embedded defaults: SQLite + local folder)."""
    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging
    from service.settings import load_settings

    import socket

    import structlog

    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_format == "json")
    structlog.contextvars.bind_contextvars(replica=settings.replica_id or socket.gethostname())
    application = create_app(settings)
    proxy = settings.forwarded_allow_ips
    uvicorn.run(application, host=host or settings.host, port=port or settings.port,
                log_level="warning", access_log=False, proxy_headers=proxy is not None,
                forwarded_allow_ips=proxy, timeout_graceful_shutdown=settings.shutdown_grace_seconds)


@command("revision", group="db", server=True)
def db_revision() -> None:
    """Print the database's schema revision and the one this code needs."""
    from service.db import make_engine, schema_revision
    from service.settings import load_settings

    engine = make_engine(load_settings().resolved_database_url)
    try:
        current, head = schema_revision(engine)
    finally:
        engine.dispose()
    typer.echo(f"database: {current}  code: {head}  {'up to date' if current == head else 'STALE'}")
    if current != head:
        raise UsageError(f"the database is at schema revision {current}, this code needs {head}",
                         slug="schema-stale", hint="Run evx db upgrade.")


@command("upgrade", group="db", server=True)
def db_upgrade() -> None:
    """Apply every pending migration to the configured database."""
    from service.db import upgrade
    from service.settings import load_settings

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    typer.echo(f"database at revision head: {settings.resolved_database_url.split('@')[-1]}")


@command("sweep", server=True, panel=PANEL_SERVER)
def sweep_command(
    older_than: int = typer.Option(None, "--older-than", help="Grace period in seconds "
                                   "(default EVX_SWEEP_GRACE_SECONDS)."),
    reconcile: bool = typer.Option(False, "--reconcile",
                                   help="Also remove objects that no item or upload owns."),
) -> None:
    """Remove evidence objects left by uploads that died (crash mid-upload)."""
    from datetime import datetime, timedelta, timezone

    from service.packages.sweeper import sweep
    from service.runtime import build_runtime
    from service.settings import load_settings

    settings = load_settings()
    runtime = build_runtime(settings)
    try:
        grace = timedelta(seconds=older_than if older_than is not None
                          else settings.sweep_grace_seconds)
        report = sweep(runtime.engine, runtime.vault, now=datetime.now(timezone.utc),
                       grace=grace, reconcile=reconcile, recorder=runtime.recorder,
                       operator_authority=settings.operator_authority)
    finally:
        runtime.close()
    typer.echo(f"removed {report.stale_pending} dead uploads, {report.unowned} unowned objects, "
               f"{report.temporaries} stale temporary files; recorded "
               f"{report.unfinished_downloads} unfinished downloads as aborted and "
               f"{report.expired_uploads} abandoned resumable uploads as expired")
