"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not reachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Database, object store and keys are reachable: this replica can take traffic."""
    runtime = request.app.state.runtime
    checks: dict[str, Any] = await anyio.to_thread.run_sync(runtime.readiness)
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    # Witnesses are reported, not required: a lagging witness must not take the hub down.
    witnesses = await anyio.to_thread.run_sync(runtime.witness_status)
    if witnesses:
        body["witnesses"] = witnesses
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics of this replica."""
    registry = request.app.state.runtime.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
