"""`evx init`, `evx serve` and `evx db ...`: initialise a data folder, run the service, migrate
its database."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import typer

from evx.cli.app import PANEL_SERVER, command, group
from evx.cli.options import JSON
from evx.cli.render import Output
from evx.client.errors import UsageError

group("db", "Database schema management.", panel=PANEL_SERVER)

#: Said whenever keys were generated: they exist nowhere else yet.
BACK_UP = ("back them up now (docs/operations.md#backups): without the key-encryption keys "
           "the stored evidence cannot be decrypted, and partners pin the log key")


def _lines(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


@command("init", server=True, data_folder=False, panel=PANEL_SERVER)
def init(as_json: bool = JSON) -> None:
    """Create the data folder (EVX_DATA_DIR, 0700) with its keys, objects folder and migrated
    database; idempotent: what exists is kept, and each line says what was done."""
    from service.datafolder import initialise
    from service.settings import load_settings

    report = initialise(load_settings())
    output = Output(as_json=as_json)
    rows = [(step.part, f"{step.outcome}: {step.where}") for step in report.steps]
    rows.append(("log verifier key", report.log_verifier_key))
    generated = [step.part for step in report.generated]
    output.result(
        {"data_dir": str(report.data_dir), "changed": report.changed,
         "steps": [{"part": s.part, "where": s.where, "outcome": s.outcome,
                    "changed": s.changed, "generated": s.back_up} for s in report.steps],
         "active_kek": report.active_kek, "kek_ids": list(report.kek_ids),
         "log_verifier_key": report.log_verifier_key, "generated": generated},
        f"data folder {report.data_dir}: "
        f"{'initialised' if report.changed else 'already initialised, nothing changed'}\n"
        + _lines(rows))
    if generated:
        output.warn(f"generated {' and '.join(generated)} in {report.data_dir}: {BACK_UP}")


class _Announcer:
    """The start banner and the shutdown line of `evx serve`: plain lines on a console, one
    log event each with EVX_LOG_FORMAT=json (log collectors parse every line)."""

    def __init__(self, settings: Any, runtime: Any, address: str, generated: list[str]) -> None:
        import structlog

        from service.datafolder import data_dir_of, database_location, object_store_location

        self.json = settings.log_format == "json"
        self.log = structlog.get_logger("evx.serve")
        self.address = address
        self.generated = generated
        self.facts = {
            "data_dir": str(data_dir_of(settings)),
            "database": database_location(settings),
            "objects": object_store_location(settings),
            "active_kek": runtime.keyring.active_key_id,
            "kek_ids": list(runtime.keyring.key_ids),
            "log_key": str(runtime.ledger.verifier_key),
        }
        self.where = str(data_dir_of(settings))
        self.done = False

    def started(self) -> None:
        if self.json:
            self.log.info("serve_started", address=self.address, **self.facts)
            if self.generated:
                self.log.warning("keys_generated", keys=self.generated, advice=BACK_UP)
            return
        f = self.facts
        others = len(f["kek_ids"]) - 1
        typer.echo(f"evx serve: listening on {self.address}\n" + _lines([
            ("data folder", f["data_dir"]), ("database", f["database"]),
            ("objects", f["objects"]),
            ("key-encryption key", f"{f['active_kek']} (active"
                                   + (f", {others} older)" if others else ")")),
            ("log key", f["log_key"])]), err=True)
        if self.generated:
            typer.echo(f"  generated {' and '.join(self.generated)} in {self.where}: "
                       f"{BACK_UP}", err=True)

    def stopped(self) -> None:
        self.done = True
        if self.json:
            self.log.info("serve_stopped", address=self.address)
        else:
            typer.echo(f"evx serve: stopped; no longer listening on {self.address}", err=True)


@command("serve", server=True, data_folder=False, panel=PANEL_SERVER)
def serve(
    host: str = typer.Option(None, help="Listen address (default EVX_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Listen port (default EVX_PORT or 8000)."),
    init_first: bool = typer.Option(False, "--init", help="Initialise the data folder first, "
                                    "as `evx init` does (idempotent); without it a missing "
                                    "data folder is refused."),
    workers: int = typer.Option(None, "--workers", min=1, max=64,
                                help="Worker processes sharing the port (default EVX_WORKERS "
                                     "or 1); more than one needs PostgreSQL."),
) -> None:
    """Start the API on the configured backends (embedded defaults: SQLite + local folder)."""
    import socket

    import structlog
    import uvicorn

    from evx.cli.preflight import require_data_folder
    from service.app import create_app
    from service.datafolder import initialise, keys_present
    from service.logs import configure_logging
    from service.settings import load_settings

    settings = load_settings()
    workers = workers or settings.workers
    if workers > 1 and not settings.resolved_database_url.startswith("postgresql"):
        raise UsageError("several workers need PostgreSQL (EVX_DATABASE_URL): on SQLite, "
                         "package changes are serialised by a lock inside one process",
                         slug="workers-need-postgresql", hint="Drop --workers, or use "
                         "PostgreSQL.")
    generated: list[str] = []
    if init_first:
        generated = [step.part for step in initialise(settings).generated]
    else:
        require_data_folder("serve", settings)
    had_kek, had_log_key = keys_present(settings)
    configure_logging(settings.log_level, json=settings.log_format == "json")
    structlog.contextvars.bind_contextvars(replica=settings.replica_id or socket.gethostname())
    application = create_app(settings)
    # a folder without keys gets them at the first start (as a cluster's emptyDir must not)
    generated += [part for part, had in (("key-encryption keys", had_kek),
                                         ("log signing key", had_log_key)) if not had]
    listen_host, listen_port = host or settings.host, port or settings.port
    announcer = _Announcer(settings, application.state.runtime,
                           f"http://{listen_host}:{listen_port}", generated)
    proxy = settings.forwarded_allow_ips
    if workers > 1:
        _serve_workers(settings, application, announcer, workers, listen_host, listen_port)
        return
    server = uvicorn.Server(uvicorn.Config(
        application, host=listen_host, port=listen_port, log_level="warning", access_log=False,
        proxy_headers=proxy is not None, forwarded_allow_ips=proxy,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds))
    startup, shutdown = server.startup, server.shutdown

    async def announced_startup(sockets: Any = None) -> None:
        await startup(sockets=sockets)
        if server.started:
            announcer.started()

    async def announced_shutdown(sockets: Any = None) -> None:
        await shutdown(sockets=sockets)
        announcer.stopped()  # before uvicorn re-raises the signal that stopped it

    server.startup = announced_startup  # type: ignore[method-assign]
    server.shutdown = announced_shutdown  # type: ignore[method-assign]
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind or the app does not start
        if not server.started:
            raise UsageError(f"evx serve could not start on {listen_host}:{listen_port} "
                             f"(the ERROR line above says why)", slug="cannot-listen",
                             hint="Choose another --port or --host.") from None
        raise
    except KeyboardInterrupt:
        if not announcer.done:
            raise  # Ctrl-C before the service was up


def _serve_workers(settings: Any, application: Any, announcer: _Announcer, workers: int,
                   host: str, port: int) -> None:
    """Serve with ``workers`` processes (service/workers.py). This process prepared the data
    folder, migrations and keys by building the app once; it closes it, tells the workers not to
    migrate, and supervises them (uvicorn restarts one that dies)."""
    import os

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    application.state.runtime.close()
    os.environ["EVX_AUTO_MIGRATE"] = "false"
    proxy = settings.forwarded_allow_ips
    config = uvicorn.Config(
        "service.workers:worker_app", factory=True, workers=workers, host=host, port=port,
        log_level="warning", access_log=False, proxy_headers=proxy is not None,
        forwarded_allow_ips=proxy, timeout_graceful_shutdown=settings.shutdown_grace_seconds)
    socket = config.bind_socket()
    announcer.started()
    try:
        Multiprocess(config, sockets=[socket]).run()
    finally:
        announcer.stopped()


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
    from datetime import datetime, timedelta

    from service.packages.sweeper import sweep
    from service.runtime import build_runtime
    from service.settings import load_settings

    settings = load_settings()
    runtime = build_runtime(settings)
    try:
        grace = timedelta(seconds=older_than if older_than is not None
                          else settings.sweep_grace_seconds)
        report = sweep(runtime.engine, runtime.vault, now=datetime.now(UTC),
                       grace=grace, reconcile=reconcile, recorder=runtime.recorder,
                       operator_authority=settings.operator_authority)
    finally:
        runtime.close()
    typer.echo(f"removed {report.stale_pending} dead uploads, {report.unowned} unowned objects, "
               f"{report.temporaries} stale temporary files; recorded "
               f"{report.unfinished_downloads} unfinished downloads as aborted and "
               f"{report.expired_uploads} abandoned resumable uploads as expired")
