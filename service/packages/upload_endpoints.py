"""HTTP side of resumable uploads, after draft-ietf-httpbis-resumable-upload (docs/api.md).

* creation: ``PUT /v1/packages/{id}/items/{name}`` with ``Upload-Complete: ?0`` and
  ``Upload-Length`` (see ``endpoints.upload_item``) -> 201, ``Location: /v1/uploads/{upload}``
* offset retrieval: ``HEAD /v1/uploads/{upload}`` -> 204 with ``Upload-Offset``
* append: ``PATCH /v1/uploads/{upload}`` (``application/partial-upload``, ``Upload-Offset``,
  ``Upload-Complete``; the completing one carries the item's ``Repr-Digest``)
* cancellation: ``DELETE /v1/uploads/{upload}``
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse

from evx.protocol import headers as hdr
from service.auth import Officer
from service.guard import streams_body
from service.limits import TransferSlots
from service.metrics import Metrics
from service.packages import repository as repo
from service.packages.errors import InvalidRequest
from service.packages.gate import Gate
from service.packages.http_fields import parse_content_digest
from service.packages.policy import Caller
from service.packages.streaming import with_body
from service.packages.uploads import AppendOutcome, ResumableUploads, upload_limits
from service.problems import AS_PROBLEM
from service.settings import Settings
from service.transfer_limits import UPLOAD_BUFFER_BYTES, PacedStream, transfer_slot
from service.wiring import part_of, provide

router = APIRouter(prefix="/v1/uploads", tags=["packages"])

PARTIAL_UPLOAD = "application/partial-upload"
_SF_INTEGER = re.compile(r"[0-9]{1,15}")  # RFC 9651 sf-integer, non-negative


def parse_sf_boolean(value: str | None, field: str) -> bool | None:
    """``?1`` / ``?0`` (RFC 9651 sf-boolean), or None when absent.

    Raises:
        InvalidRequest: any other value.
    """
    if value is None:
        return None
    if value.strip() in ("?1", "?0"):
        return value.strip() == "?1"
    raise InvalidRequest(f"{field} must be ?1 or ?0 (RFC 9651 boolean)")


def parse_sf_integer(value: str | None, field: str) -> int | None:
    """A non-negative RFC 9651 sf-integer, or None when absent.

    Raises:
        InvalidRequest: not a non-negative integer of at most 15 digits.
    """
    if value is None:
        return None
    if _SF_INTEGER.fullmatch(value.strip()) is None:
        raise InvalidRequest(f"{field} must be a non-negative integer")
    return int(value.strip())


# The running service's parts, typed (service/wiring.py); the helpers below are shared with
# the one-request upload endpoint, which passes its request on.
UploadsDep = Annotated[ResumableUploads, Depends(provide("uploads", ResumableUploads))]


def _uploads(request: Request) -> ResumableUploads:
    return part_of(request, "uploads", ResumableUploads)


def _settings(request: Request) -> Settings:
    return part_of(request, "settings", Settings)


def _slots(request: Request) -> TransferSlots:
    return part_of(request, "transfer_slots", TransferSlots)


def _metrics(request: Request) -> Metrics:
    return part_of(request, "metrics", Metrics)


def _gate(request: Request) -> Gate:
    return part_of(request, "gate", Gate)


def upload_headers(request: Request, session: repo.UploadSession,
                   complete: bool = False) -> dict[str, str]:
    uploads = _uploads(request)
    limits = upload_limits(session, uploads.idle_expiry, _settings(request).max_item_bytes,
                           _gate(request).now())
    return {hdr.UPLOAD_OFFSET: str(session.length if complete else session.received),
            hdr.UPLOAD_COMPLETE: "?1" if complete else "?0",
            hdr.UPLOAD_LENGTH: str(session.length),
            hdr.UPLOAD_LIMIT: ", ".join(f"{k}={v}" for k, v in limits.items()),
            "Location": f"/v1/uploads/{session.id}", "Cache-Control": "no-store"}


def _counted(request: Request) -> AsyncIterator[bytes]:
    metrics = _metrics(request)

    async def blocks() -> AsyncIterator[bytes]:
        async for block in request.stream():
            metrics.bytes_in.inc(len(block))
            yield block

    return blocks()


async def create_upload(request: Request, officer: Caller, package_id: str, name: str,
                        length: int | None, content_length: int | None) -> Response:
    """Upload creation (``Upload-Complete: ?0``): open the upload, append any content sent."""
    if length is None:
        raise InvalidRequest("a resumable upload needs Upload-Length (the item's size)")
    uploads = _uploads(request)
    session = await anyio.to_thread.run_sync(
        lambda: uploads.create(officer, package_id, name, length))
    if content_length:
        outcome = await _append(request, officer, session.id, 0, False, None)
        session = outcome.session
    return JSONResponse({"upload": f"/v1/uploads/{session.id}", "offset": session.received,
                         "length": session.length}, status_code=201,
                        headers=upload_headers(request, session))


async def _append(request: Request, officer: Caller, upload_id: str, offset: int,
                  complete: bool, repr_sha256: bytes | None,
                  length: int | None = None) -> AppendOutcome:
    uploads = _uploads(request)
    settings = _settings(request)

    def consume(body: Iterator[bytes]) -> AppendOutcome:
        return uploads.append(officer, upload_id, offset=offset, complete=complete, body=body,
                              length=length, repr_sha256=repr_sha256)

    # the same limits as a one-request upload: a slot per officer/authority, the memory budget,
    # the minimum rate (a stalled append keeps its whole chunks, like any broken one)
    slots = _slots(request)
    async with transfer_slot(slots, officer, UPLOAD_BUFFER_BYTES,
                             settings.transfer_queue_seconds):
        body = PacedStream(_counted(request).__aiter__(),
                           min_rate=settings.transfer_min_bytes_per_second,
                           window=settings.transfer_stall_seconds)
        return await with_body(body, consume, slots.threads)


@router.head("/{upload_id}", status_code=204, responses={
    404: {"description": "No such upload", **AS_PROBLEM}})
def upload_offset(upload_id: str, officer: Officer, uploads: UploadsDep,
                  request: Request) -> Response:
    """Offset retrieval: how many bytes of the upload are stored durably."""
    session = uploads.status(officer, upload_id)
    return Response(status_code=204, headers=upload_headers(request, session))


@router.patch("/{upload_id}", status_code=204, responses={
    201: {"description": "Upload complete: the item, digest-checked and on the record"},
    400: {"description": "Inconsistent upload length", **AS_PROBLEM},
    404: {"description": "No such upload", **AS_PROBLEM},
    409: {"description": "Mismatching offset, or superseded", **AS_PROBLEM},
    415: {"description": "Not application/partial-upload", **AS_PROBLEM},
    422: {"description": "Repr-Digest mismatch or missing", **AS_PROBLEM}},
    openapi_extra={"requestBody": {"required": True, "content": {
        PARTIAL_UPLOAD: {"schema": {"type": "string", "format": "binary"}}}}})
@streams_body
async def upload_append(
    upload_id: str, officer: Officer, request: Request,
    upload_offset_header: Annotated[str, Header(alias=hdr.UPLOAD_OFFSET)],
    upload_complete: Annotated[str, Header(alias=hdr.UPLOAD_COMPLETE)],
    content_type: Annotated[str | None, Header()] = None,
    upload_length: Annotated[str | None, Header(alias=hdr.UPLOAD_LENGTH)] = None,
    repr_digest: Annotated[str | None, Header(
        description="RFC 9530 digest of the whole item; required when completing")] = None,
) -> Response:
    """Upload append: continue at ``Upload-Offset``; ``Upload-Complete: ?1`` finishes the item."""
    from service.packages.endpoints import item_out, item_url

    if (content_type or "").split(";")[0].strip().lower() != PARTIAL_UPLOAD:
        from service.problems import Problem, ProblemType

        raise Problem(ProblemType(415, "unsupported-media-type", "Unsupported media type"),
                      f"upload appends are {PARTIAL_UPLOAD}")
    offset = parse_sf_integer(upload_offset_header, hdr.UPLOAD_OFFSET)
    complete = parse_sf_boolean(upload_complete, hdr.UPLOAD_COMPLETE)
    length = parse_sf_integer(upload_length, hdr.UPLOAD_LENGTH)
    expected = parse_content_digest(repr_digest) if repr_digest is not None else None
    assert offset is not None and complete is not None
    outcome = await _append(request, officer, upload_id, offset, complete, expected, length)
    if outcome.item is None:
        return Response(status_code=204, headers=upload_headers(request, outcome.session))
    item = outcome.item
    headers = upload_headers(request, outcome.session, complete=True)
    headers["Location"] = item_url(item.package_id, item.name) + "/content"
    body: dict[str, Any] = item_out(item).model_dump(mode="json")
    return JSONResponse(body, status_code=201, headers=headers)


@router.delete("/{upload_id}", status_code=204, responses={
    404: {"description": "No such upload", **AS_PROBLEM}})
def upload_cancel(upload_id: str, officer: Officer, uploads: UploadsDep) -> Response:
    """Upload cancellation: the staged bytes are removed; the cancellation is on the record."""
    uploads.cancel(officer, upload_id)
    return Response(status_code=204)
