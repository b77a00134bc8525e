"""``GET /v1/packages/{id}/archive``: the whole package as one streamed ZIP (service/packages/
archive.py), each item recorded as a download of its own."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.auth import Officer
from service.ledger.endpoints import LedgerDep, RecorderDep
from service.packages.archive import PackageArchive
from service.packages.custody_endpoints import MAX_CUSTODY_ENTRIES, GateDep, proven_record
from service.packages.endpoints import ERRORS, SlotsDep, TransfersDep
from service.packages.streaming import blocks_from_thread, served
from service.problems import AS_PROBLEM
from service.transfer_limits import DOWNLOAD_BUFFER_BYTES, PacedStreamingResponse
from service.transfer_limits import acquire as acquire_slot
from service.wiring import MetricsDep, SettingsDep

router = APIRouter(prefix="/v1/packages", tags=["packages"])


@router.get("/{package_id}/archive", responses={
    **ERRORS, 200: {"description": "The package as a ZIP archive (stored, ZIP64 where needed)",
                    "content": {"application/zip": {"schema": {"type": "string",
                                                               "format": "binary"}}}},
    500: {"description": "An item's stored bytes are not authentic", **AS_PROBLEM}},
    response_class=StreamingResponse)
async def download_archive(package_id: str, officer: Officer, request: Request,
                           transfers: TransfersDep, gate: GateDep, ledger: LedgerDep,
                           recorder: RecorderDep, slots: SlotsDep, settings: SettingsDep,
                           metrics: MetricsDep) -> StreamingResponse:
    """Every item of the package in one ZIP archive under one folder, with the download record
    (``.evx/PKG/``: manifest, custody record, ``SHA256SUMS``) that ``evx verify`` checks
    offline. Each item is authorised and recorded (``download.started`` before its bytes,
    ``download.completed`` after) exactly as a single item's download; a share revoked or
    expired meanwhile cuts the stream."""

    def custody_pages() -> list[dict[str, Any]]:
        recorder.record(officer, "custody.read", package=package_id)
        pages, start = [], 0
        while True:
            page = proven_record(ledger, package_id, start, MAX_CUSTODY_ENTRIES)
            pages.append(page.model_dump(mode="json"))
            if page.complete or not page.entries:
                return pages
            start = page.entries[-1].index + 1

    archive = PackageArchive(transfers, gate, officer, package_id,
                             origin=str(request.base_url).rstrip("/"),
                             custody_pages=custody_pages, log_key=str(ledger.verifier_key))
    await acquire_slot(slots, officer, DOWNLOAD_BUFFER_BYTES, settings.transfer_queue_seconds)
    try:
        await anyio.to_thread.run_sync(archive.open)
    except BaseException:
        slots.release(officer, DOWNLOAD_BUFFER_BYTES)
        await anyio.to_thread.run_sync(lambda: archive.close(None))
        raise

    body = served(blocks_from_thread(archive.chunks(), None, slots.threads), metrics,
                  release=lambda: slots.release(officer, DOWNLOAD_BUFFER_BYTES),
                  finish=lambda _, error: archive.close(error))

    filename = quote(archive.folder, safe="") + ".zip"
    return PacedStreamingResponse(
        body, media_type="application/zip",  # type: ignore[arg-type]
        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                 "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        min_rate=settings.transfer_min_bytes_per_second, window=settings.transfer_stall_seconds)
