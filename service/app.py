"""The application factory: builds the runtime from settings and mounts every router."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC

import structlog
from fastapi import FastAPI

from service import problems
from service.runtime import Runtime, build_runtime
from service.settings import Settings

log = structlog.get_logger("evx.http")


def _sweep_at_start(runtime: Runtime) -> None:
    from datetime import datetime, timedelta

    from service.packages.sweeper import sweep

    try:
        report = sweep(runtime.engine, runtime.vault, now=datetime.now(UTC),
                       grace=timedelta(seconds=runtime.settings.sweep_grace_seconds),
                       recorder=runtime.recorder,
                       operator_authority=runtime.settings.operator_authority)
        log.info("sweep_at_start", dead_uploads=report.stale_pending,
                 expired_uploads=report.expired_uploads)
    except Exception as exc:  # noqa: BLE001 - the next start (or `evx sweep`) tries again
        log.warning("sweep_at_start_failed", error=type(exc).__name__)


KEY_RELOAD_SECONDS = 60  # a KEK rotated by `evx keys rotate` reaches every replica this fast


def _reload_keys(runtime: Runtime, stop: threading.Event) -> None:
    while not stop.wait(KEY_RELOAD_SECONDS):
        try:
            runtime.keyring.reload()
        except Exception as exc:  # noqa: BLE001 - keep the keys we have; readiness reports
            log.warning("key_reload_failed", error=type(exc).__name__)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """A configured app. Pass ``runtime`` to share one between apps (tests, benchmarks)."""
    settings = settings or Settings()
    owns_runtime = runtime is None
    runtime = runtime or build_runtime(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        from service.limits import throttle_recorder

        throttles = threading.Thread(
            target=throttle_recorder, name="throttle-record",
            args=(runtime.request_limits, runtime.recorder,
                  runtime.settings.throttle_window_seconds, stop), daemon=True)
        throttles.start()
        if owns_runtime:
            # Uploads that died with an earlier process: removed in the background at start.
            threading.Thread(target=_sweep_at_start, args=(runtime,), daemon=True,
                             name="sweeper").start()
            threading.Thread(target=_reload_keys, args=(runtime, stop), daemon=True,
                             name="key-reload").start()
            if runtime.collector is not None:
                runtime.collector.start()
            if runtime.settings.webhook_dispatch:
                runtime.notifier.start()
        yield
        stop.set()
        throttles.join(timeout=10)  # the last window's refusals go on the record
        if owns_runtime:
            runtime.close()

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # served with local assets: service/docs.py
        title="evidence-exchange",
        version="0.1.0",
        description="Secure cross-border exchange of digital evidence with a verifiable chain "
                    "of custody. Every error is an RFC 9457 problem (application/problem+json).",
    )
    app.state.runtime = runtime
    problems.register_domain_errors()
    problems.install(app)
    app.openapi = lambda: problems.problem_openapi(app)  # type: ignore[method-assign]

    from service.docs import install_docs
    from service.events.endpoints import router as events_router
    from service.health import router as health_router
    from service.identity.endpoints import router as authorities_router
    from service.ledger.endpoints import router as ledger_router
    from service.packages.archive_endpoints import router as archive_router
    from service.packages.custody_endpoints import router as custody_router
    from service.packages.endpoints import router as packages_router
    from service.packages.upload_endpoints import router as uploads_router
    from service.requests.endpoints import router as requests_router

    if settings.api_docs:  # off in production: EVX_API_DOCS=false
        install_docs(app)
    app.include_router(health_router)
    app.include_router(packages_router)
    app.include_router(uploads_router)
    app.include_router(custody_router)
    app.include_router(archive_router)
    app.include_router(ledger_router)
    app.include_router(requests_router)
    app.include_router(authorities_router)
    app.include_router(events_router)
    from service.web.pages import install_web

    install_web(app)

    from service.auth import authenticate_request, current_principal
    from service.guard import RequestGuard
    from service.web.sessions import CSRF_HEADER

    # Added before the request-context middleware, so it runs inside it (request ids, metrics).
    app.add_middleware(
        RequestGuard, routes=lambda: app.router.routes, authenticator=current_principal,
        authenticate=lambda headers, path: authenticate_request(
            runtime, headers.get("authorization"), path, cookie=headers.get("cookie"),
            csrf=headers.get(CSRF_HEADER.lower()), method="POST"),  # every guarded method changes
        max_json_bytes=settings.max_json_bytes)

    # Outermost of ours: request ids, metrics and unhandled errors (service/request_context.py).
    from service.request_context import RequestContext

    app.add_middleware(RequestContext, metrics=runtime.metrics)

    from service.health import LivenessFirst

    app.add_middleware(LivenessFirst)  # added last: outermost, before request_context
    return app
