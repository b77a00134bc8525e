"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from service.problems import UNAUTHENTICATED, Problem
from service.runtime import Runtime
from service.wiring import MetricsDep, SettingsDep, provide_service

router = APIRouter(tags=["operations"])
RuntimeDep = Annotated[Runtime, Depends(provide_service(Runtime))]


# Health and metrics are answered on the event loop (or on their own thread limiter), never
# from the worker threads that requests and transfers share: a busy replica still answers
# its probes (review H4).
_READINESS_THREADS = anyio.CapacityLimiter(2)


HEALTHZ_BODY = b'{"status":"ok"}'


class LivenessFirst:
    """ASGI middleware, outermost: ``GET``/``HEAD /healthz`` is answered here, before the
    request-context middleware, the guard and the router.

    Under load the event loop thread waits for the GIL at every step of a request, and a probe
    that goes through the whole stack takes ~10 loop steps; answered here it takes two. The
    route below stays for the API description (and answers the same if this is not installed).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz" and \
                scope["method"] in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(HEALTHZ_BODY)).encode()),
                (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body",
                        "body": HEALTHZ_BODY if scope["method"] == "GET" else b""})
            return
        await self.app(scope, receive, send)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not reachable"}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Database, object store and keys are reachable: this replica can take traffic."""
    checks: dict[str, Any] = await anyio.to_thread.run_sync(
        runtime.readiness, limiter=_READINESS_THREADS)
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    # Witnesses are reported, not required: a lagging witness must not take the hub down.
    witnesses = await anyio.to_thread.run_sync(runtime.witness_status,
                                               limiter=_READINESS_THREADS)
    if witnesses:
        body["witnesses"] = witnesses
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, settings: SettingsDep,
                  service_metrics: MetricsDep) -> Response:
    """Prometheus metrics of this replica (with EVX_METRICS_TOKEN set: only with that bearer)."""
    wanted = settings.metrics_token
    if wanted is not None:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {wanted.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Problem(UNAUTHENTICATED, "Send 'Authorization: Bearer <EVX_METRICS_TOKEN>'.")
    registry = service_metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
