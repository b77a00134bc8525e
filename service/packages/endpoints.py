"""HTTP endpoints of the package domain: thin; decisions live in PackageService."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, unquote

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.convertors import PathConvertor, register_url_convertor

from evx.protocol import headers as hdr
from evx.protocol.names import InvalidName, decode_text
from service.auth import Officer
from service.guard import streams_body
from service.limits import TransferSlots
from service.packages import repository as repo
from service.packages.errors import InvalidItemName, ItemNotFound
from service.packages.http_fields import (
    format_sha256_digest,
    parse_content_digest,
    parse_range,
)
from service.packages.schemas import (
    EntryCreate,
    ItemOut,
    PackageCreate,
    PackageList,
    PackageOut,
    ReceiptCreate,
    ReceiptOut,
    SealOut,
    ShareCreate,
    ShareOut,
)
from service.packages.service import PackageService
from service.packages.streaming import blocks_from_thread, served, with_body
from service.packages.transfers import ItemTransfers
from service.problems import AS_PROBLEM, Responses
from service.transfer_limits import (
    DOWNLOAD_BUFFER_BYTES,
    UPLOAD_BUFFER_BYTES,
    PacedStream,
    PacedStreamingResponse,
    transfer_slot,
)
from service.transfer_limits import acquire as acquire_slot
from service.wiring import MetricsDep, SettingsDep, provide


class ItemNameConvertor(PathConvertor):
    """``{name:item}``: like ``path``, but an item name may hold any character, newline too."""

    regex = r"[\s\S]+"


register_url_convertor("item", ItemNameConvertor())

router = APIRouter(prefix="/v1/packages", tags=["packages"])

ERRORS: Responses = {status: {"description": text, **AS_PROBLEM} for status, text in {
    401: "Missing or refused token", 403: "Not allowed (role, share expired or revoked)",
    404: "No such package for this authority", 503: "Ledger or store unavailable",
}.items()}


PackagesDep = Annotated[PackageService, Depends(provide("packages", PackageService))]
TransfersDep = Annotated[ItemTransfers, Depends(provide("transfers", ItemTransfers))]
SlotsDep = Annotated[TransferSlots, Depends(provide("transfer_slots", TransferSlots))]


def item_out(item: repo.ItemRow) -> ItemOut:
    return ItemOut(name=item.name, kind=item.kind, target=item.target,  # type: ignore[arg-type]
                   size=item.size, sha256=item.sha256, uploaded_at=item.uploaded_at,
                   uploaded_by=item.uploaded_by)


def _item_name(request: Request, routed: str) -> str:
    """The item name exactly as sent: percent-decoded once from the raw request target.

    The routed value has been decoded by the server already (and by some clients' test
    transports twice); a percent-escape that is not UTF-8 would have become U+FFFD there
    silently. Decoding the raw target once, strictly, keeps every name exact.
    """
    raw = request.scope.get("raw_path")
    if not raw:
        return routed
    try:
        target = raw.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidItemName("the request target is not ASCII: percent-encode the item "
                              "name (RFC 3986)") from None
    _, found, after = target.partition("/items/")
    if not found:
        return routed
    if request.scope.get("route") is not None and \
            request.scope["route"].path.endswith("/content"):
        after = after.removesuffix("/content")
    try:
        return unquote(after, errors="strict")
    except UnicodeDecodeError:
        raise InvalidItemName("the percent-encoded item name is not UTF-8: send the name's text "
                              "form (bytes that are not UTF-8 as %25XX)") from None


def item_url(package_id: str, name: str) -> str:
    """The URL path of an item, percent-encoded (RFC 3986): header values stay ASCII."""
    return f"/v1/packages/{quote(package_id, safe='')}/items/{quote(name, safe='/')}"


def content_disposition(name: str) -> str:
    """``attachment`` with the item's last segment as filename (RFC 6266 / RFC 8187)."""
    segment = name.rsplit("/", 1)[-1]
    try:
        raw = decode_text(segment).decode("utf-8")  # the true name when it is UTF-8
    except (InvalidName, UnicodeDecodeError):
        raw = segment  # bytes that are not UTF-8: their text form, %XX and all
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in raw)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(raw, safe='')}"


def _share_out(share: repo.ShareRow, now_active: bool) -> ShareOut:
    return ShareOut(authority=share.authority, legal_basis=share.legal_basis,
                    request_reference=share.request_reference, expires_at=share.expires_at,
                    created_at=share.created_at, revoked_at=share.revoked_at, active=now_active)


def _package_out(service: PackageService, caller_authority: str, package: repo.PackageRow,
                 items: list[repo.ItemRow], shares: list[repo.ShareRow]) -> PackageOut:
    now = service.now()
    out_shares = [_share_out(s, s.state().active(now)) for s in shares]
    owner = caller_authority == package.owner_authority
    return PackageOut(
        id=package.id, owner_authority=package.owner_authority,
        case_reference=package.case_reference, title=package.title,
        description=package.description, created_by=package.created_by,
        created_at=package.created_at, sealed=package.sealed_at is not None,
        sealed_at=package.sealed_at, manifest_sha256=package.manifest_sha256,
        items=[item_out(i) for i in items],
        shares=out_shares if owner else None,
        share=None if owner or not out_shares else out_shares[0],
    )


@router.post("", status_code=201, response_model=PackageOut, responses=ERRORS)
def create_package(body: PackageCreate, officer: Officer, service: PackagesDep,
                   response: Response) -> PackageOut:
    """Create an evidence package owned by the caller's authority."""
    package = service.create(officer, case_reference=body.case_reference, title=body.title,
                             description=body.description)
    response.headers["Location"] = f"/v1/packages/{quote(package.id, safe='')}"
    return _package_out(service, officer.authority, package, [], [])


@router.get("", response_model=PackageList, responses=ERRORS)
def list_packages(officer: Officer, service: PackagesDep,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> PackageList:
    """Packages the caller's authority owns or that are shared with it."""
    rows = service.list(officer, limit=limit, offset=offset)
    return PackageList(packages=[_package_out(service, officer.authority, *row) for row in rows])


@router.get("/{package_id}", response_model=PackageOut, responses=ERRORS)
async def get_package(package_id: str, officer: Officer, service: PackagesDep) -> PackageOut:
    """Metadata and items (name, size, SHA-256) of one package."""
    # One worker-thread hand-off for the queries and the durable ledger append together; the
    # response is built and checked on the event loop (a plain ``def`` endpoint would take a
    # second hand-off for FastAPI's response validation).
    package, items, shares = await anyio.to_thread.run_sync(service.read, officer, package_id)
    return _package_out(service, officer.authority, package, items, shares)


@router.put("/{package_id}/items/{name:item}", status_code=201, response_model=ItemOut,
            responses={**ERRORS, 409: {"description": "Sealed, or the item exists", **AS_PROBLEM},
                       413: {"description": "Too large", **AS_PROBLEM},
                       422: {"description": "Content-Digest mismatch or bad name", **AS_PROBLEM}},
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}}})
@streams_body
async def upload_item(
    package_id: str, name: str, officer: Officer, request: Request, response: Response,
    transfers: TransfersDep, slots: SlotsDep, settings: SettingsDep, metrics: MetricsDep,
    content_digest: Annotated[str | None, Header(
        description="RFC 9530, e.g. sha-256=:<base64>:")] = None,
    content_length: Annotated[int | None, Header(ge=0)] = None,
    upload_complete: Annotated[str | None, Header(
        alias=hdr.UPLOAD_COMPLETE,
        description="?0 starts a resumable upload (docs/api.md)")] = None,
    upload_length: Annotated[str | None, Header(alias=hdr.UPLOAD_LENGTH)] = None,
) -> ItemOut | Response:
    """Upload one item as the raw request body, streamed and encrypted as it arrives; or, with
    ``Upload-Complete: ?0``, create a resumable upload of it
    (draft-ietf-httpbis-resumable-upload)."""
    from service.packages.upload_endpoints import create_upload, parse_sf_boolean, parse_sf_integer

    name = _item_name(request, name)
    if parse_sf_boolean(upload_complete, hdr.UPLOAD_COMPLETE) is False:
        return await create_upload(request, officer, package_id, name,
                                   parse_sf_integer(upload_length, hdr.UPLOAD_LENGTH),
                                   content_length)
    expected = parse_content_digest(content_digest) if content_digest is not None else None
    async with transfer_slot(slots, officer, UPLOAD_BUFFER_BYTES,
                             settings.transfer_queue_seconds):
        body = PacedStream(request.stream().__aiter__(),
                           min_rate=settings.transfer_min_bytes_per_second,
                           window=settings.transfer_stall_seconds)
        item = await with_body(body, lambda body: transfers.upload(
            officer, package_id, name, body, declared_length=content_length,
            expected_sha256=expected), slots.threads)
    metrics.bytes_in.inc(item.size)
    response.headers["Location"] = item_url(package_id, item.name) + "/content"
    return item_out(item)


@router.post("/{package_id}/items", status_code=201, response_model=ItemOut,
             responses={**ERRORS, 409: {"description": "Sealed, the item exists, or a file or "
                                                      "link would be another item's directory",
                                        **AS_PROBLEM},
                        422: {"description": "Bad name, kind or target", **AS_PROBLEM}})
def add_entry(package_id: str, body: EntryCreate, officer: Officer, transfers: TransfersDep,
              response: Response) -> ItemOut:
    """Add a symbolic link (target recorded, never followed) or an empty directory as an item."""
    item = transfers.add_entry(officer, package_id, body.name, kind=body.kind,
                               target=body.target)
    response.headers["Location"] = item_url(package_id, item.name)
    return item_out(item)


@router.post("/{package_id}/receipts", status_code=201, response_model=ReceiptOut,
             responses=ERRORS)
def add_receipt(package_id: str, body: ReceiptCreate, officer: Officer,
                service: PackagesDep) -> ReceiptOut:
    """Put on the record that the caller received and verified the package's items
    (``download.verified``, with the manifest hash it computed)."""
    index, matches = service.receipt(officer, package_id, manifest=body.manifest_sha256,
                                     items=body.items, size=body.bytes)
    return ReceiptOut(ledger_index=index, matches_seal=matches)


@router.post("/{package_id}/seal", response_model=SealOut,
             responses={**ERRORS, 409: {"description": "Already sealed", **AS_PROBLEM}})
def seal_package(package_id: str, officer: Officer, service: PackagesDep) -> SealOut:
    """Freeze the package; its manifest hash goes into the ledger."""
    package, index = service.seal(officer, package_id)
    assert package.sealed_at is not None and package.manifest_sha256 is not None
    return SealOut(id=package.id, sealed_at=package.sealed_at,
                   manifest_sha256=package.manifest_sha256, ledger_index=index)


@router.post("/{package_id}/shares", status_code=201, response_model=ShareOut,
             responses={**ERRORS, 409: {"description": "Not sealed", **AS_PROBLEM},
                        422: {"description": "Unknown authority or bad expiry", **AS_PROBLEM}})
def share_package(package_id: str, body: ShareCreate, officer: Officer,
                  service: PackagesDep) -> ShareOut:
    """Share a sealed package with another authority under a legal basis."""
    share = service.share(officer, package_id, authority=body.authority,
                          legal_basis=body.legal_basis, request_reference=body.request_reference,
                          expires_at=body.expires_at)
    return _share_out(share, share.state().active(service.now()))


@router.delete("/{package_id}/shares/{authority}", response_model=ShareOut, responses=ERRORS)
def revoke_share(package_id: str, authority: str, officer: Officer,
                 service: PackagesDep) -> ShareOut:
    """Revoke the share with ``authority``; its officers can no longer retrieve the package."""
    share = service.revoke(officer, package_id, authority)
    return _share_out(share, False)


@router.head("/{package_id}/items/{name:item}/content", responses=ERRORS)
def item_content_head(package_id: str, name: str, officer: Officer, service: PackagesDep,
                      request: Request) -> Response:
    """Size and digest of an item without its bytes (a metadata read, on the record)."""
    name = _item_name(request, name)
    _, items, _ = service.read(officer, package_id)
    item = next((i for i in items if i.name == name), None)
    if item is None:
        raise ItemNotFound(f"the package has no item {name!r}")
    return Response(status_code=200, headers={
        hdr.REPR_DIGEST: format_sha256_digest(item.sha256), hdr.ETAG: f'"{item.sha256}"',
        "Accept-Ranges": "bytes", "Content-Length": str(item.size),
        "Cache-Control": "no-store"})


@router.get("/{package_id}/items/{name:item}/content", responses={
    **ERRORS, 200: {"description": "The decrypted item", "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    206: {"description": "The requested byte range", "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    416: {"description": "Range not satisfiable", **AS_PROBLEM}},
    response_class=StreamingResponse)
async def download_item(
    package_id: str, name: str, officer: Officer, request: Request, transfers: TransfersDep,
    slots: SlotsDep, settings: SettingsDep, metrics: MetricsDep,
    range_header: Annotated[str | None, Header(alias=hdr.RANGE)] = None,
    if_range: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Stream the decrypted item; ``Range: bytes=N-`` resumes. The digest is in ``Repr-Digest``."""
    name = _item_name(request, name)

    def select(item: repo.ItemRow) -> tuple[int, int] | None:
        # RFC 9110 13.1.5: a Range whose If-Range does not match is ignored (send it all).
        if if_range is not None and if_range != f'"{item.sha256}"':
            return None
        return parse_range(range_header, item.size)

    await acquire_slot(slots, officer, DOWNLOAD_BUFFER_BYTES, settings.transfer_queue_seconds)
    try:
        download = await anyio.to_thread.run_sync(
            lambda: transfers.begin_download(officer, package_id, name, select))
    except BaseException:
        slots.release(officer, DOWNLOAD_BUFFER_BYTES)
        raise
    item = download.item
    etag = f'"{item.sha256}"'
    length = download.end - download.start
    headers = {
        hdr.REPR_DIGEST: format_sha256_digest(item.sha256),
        hdr.ETAG: etag,
        "Accept-Ranges": "bytes",
        "Content-Length": str(length),
        "Cache-Control": "no-store",
        "Content-Disposition": content_disposition(item.name),
        "X-Content-Type-Options": "nosniff",
    }
    partial = (download.start, download.end) != (0, item.size)
    if partial:
        headers[hdr.CONTENT_RANGE] = f"bytes {download.start}-{download.end - 1}/{item.size}"
    else:
        headers[hdr.CONTENT_DIGEST] = headers[hdr.REPR_DIGEST]

    first = True

    def recheck() -> None:  # the first block was authorised a moment ago
        nonlocal first
        if not first:
            transfers.recheck(officer, download)
        first = False

    body = served(
        blocks_from_thread(download.chunks, recheck, slots.threads), metrics,
        release=lambda: slots.release(officer, DOWNLOAD_BUFFER_BYTES),
        finish=lambda sent, error: transfers.finish_download(
            officer, package_id, name, sent=sent, error=error, expected=length,
            started_index=download.started_index))

    return PacedStreamingResponse(
        body, status_code=206 if partial else 200,  # type: ignore[arg-type]
        media_type="application/octet-stream", headers=headers,
        min_rate=settings.transfer_min_bytes_per_second, window=settings.transfer_stall_seconds)
