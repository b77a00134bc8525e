"""The application factory: builds the runtime from settings and mounts every router."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect

from evx.protocol import headers
from service import problems
from service.runtime import Runtime, build_runtime
from service.settings import Settings

REQUEST_ID_HEADER = headers.REQUEST_ID
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that closed the connection
MAX_REQUEST_ID_CHARS = 64  # a client-chosen id is echoed into logs; keep it small

log = structlog.get_logger("evx.http")


def _sweep_at_start(runtime: Runtime) -> None:
    from datetime import datetime, timedelta, timezone

    from service.packages.sweeper import sweep

    try:
        report = sweep(runtime.engine, runtime.vault, now=datetime.now(timezone.utc),
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

    from service.events.endpoints import router as events_router
    from service.health import router as health_router
    from service.identity.endpoints import router as authorities_router
    from service.ledger.endpoints import router as ledger_router
    from service.packages.custody_endpoints import router as custody_router
    from service.packages.endpoints import router as packages_router
    from service.packages.upload_endpoints import router as uploads_router
    from service.requests.endpoints import router as requests_router

    from service.docs import install_docs

    if settings.api_docs:  # off in production: EVX_API_DOCS=false
        install_docs(app)
    app.include_router(health_router)
    app.include_router(packages_router)
    app.include_router(uploads_router)
    app.include_router(custody_router)
    app.include_router(ledger_router)
    app.include_router(requests_router)
    app.include_router(authorities_router)
    app.include_router(events_router)

    from service.auth import authenticate_request, current_principal
    from service.guard import RequestGuard

    # Added before the request-context middleware, so it runs inside it (request ids, metrics).
    app.add_middleware(
        RequestGuard, routes=lambda: app.router.routes, authenticator=current_principal,
        authenticate=lambda headers, path: authenticate_request(
            runtime, headers.get("authorization"), path),
        max_json_bytes=settings.max_json_bytes)

    @app.middleware("http")
    async def request_context(request: Request,
                              call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if 0 < len(incoming) <= MAX_REQUEST_ID_CHARS and \
            incoming.isascii() and incoming.isprintable() else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            try:
                response = await call_next(request)
            except ClientDisconnect:
                # The caller went away mid-body (Ctrl-C, a file changed under the client): its
                # fault, not ours -- no traceback, and a 4xx in the metrics (nginx's 499), so
                # alerts on 5xx do not page anyone. The attempt is on the record already.
                log.info("client_aborted", method=request.method, path=request.url.path)
                response = Response(status_code=CLIENT_CLOSED_REQUEST)
            except Exception as exc:  # rendered here so the 500 carries the request id
                log.error("unhandled_error", path=request.url.path, error=type(exc).__name__,
                          exc_info=exc)
                response = problems.problem_response(
                    problems.INTERNAL, "An internal error occurred; quote the request id "
                    "when you report it.", request.url.path, request_id=request_id)
            status = response.status_code
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            runtime.metrics.requests.labels(request.method, path, str(status)).inc()
            runtime.metrics.request_seconds.labels(request.method, path).observe(elapsed)
            log.info("request", method=request.method, route=path, status=status,
                     ms=round(elapsed * 1000, 2))
            structlog.contextvars.unbind_contextvars("request_id")

    return app
