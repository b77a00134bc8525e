"""A whole package as one ZIP archive, streamed: the recipient's "download as a folder".

Each item is a download like any other: authorised, ``download.started`` on the record before
its first byte leaves (if the ledger cannot be written, nothing of it is served), its share
checked again every MiB (a revoked share cuts the stream), ``download.completed`` or
``download.aborted`` after. The archive is laid out as ``evx download -o DIR`` lays out a
folder -- items at their local paths under one top folder, the download record in
``.evx/PKG/`` -- so ``evx verify`` and ``sha256sum -c`` check what was extracted, offline.

Names go through the client's own mapping (:mod:`evx.protocol.localnames`) with the strictest
profile, since nobody knows where the archive will be extracted: every name a Windows, macOS or
Linux file system holds as written (reserved characters and device names escaped, case and
Unicode spellings never colliding, UTF-8 only, at most 255 bytes a component). Item names are
relative paths without ``..`` or empty segments (:func:`evx.protocol.names.check_name`), so no
entry leaves the top folder. Symbolic links are not put in the archive: extraction tools
disagree on them, and a link to ``/`` or ``..`` is what an extractor must never be asked to
make; the record lists them (and ``evx download`` makes them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from zipstream import ZIP_STORED, ZipStream

from evx.protocol.localnames import RECORD_DIR, Profile, local_paths
from evx.protocol.names import decode_text, encode_bytes
from evx.protocol.record import record_files
from service.packages import repository as repo
from service.packages.gate import Gate
from service.packages.policy import Caller, Operation
from service.packages.transfers import Download, ItemTransfers

#: Where the archive may be extracted: anywhere, so every file system's limits at once.
ARCHIVE_PROFILE = Profile(windows=True, case_insensitive=True, normalizing=True, utf8_only=True)
RECHECK_BYTES = 1024 * 1024  # the share is checked again after each MiB, as a single download


def archive_folder(package_id: str) -> str:
    """The archive's top folder (and, with ``.zip``, its file name)."""
    return f"evidence-{package_id}"


def layout(items: list[repo.ItemRow]) -> list[tuple[repo.ItemRow, str]]:
    """Each item with the local path it has inside the top folder, by name (the profile's
    paths are UTF-8: the ZIP entry name is that text; the record's ``local`` its text form)."""
    raw = {item.name: decode_text(item.name) for item in items}
    mapping = local_paths(raw.values(), ARCHIVE_PROFILE)
    return [(item, mapping[raw[item.name]].decode("utf-8"))
            for item in sorted(items, key=lambda i: i.name)]


def _whole(_: repo.ItemRow) -> None:
    return None


class PackageArchive:
    """One archive download by ``caller``: :meth:`open` (before any header goes out), then
    :meth:`chunks` on a worker thread, then :meth:`close` whatever happened."""

    def __init__(self, transfers: ItemTransfers, gate: Gate, caller: Caller, package_id: str, *,
                 origin: str, custody_pages: Callable[[], list[dict[str, Any]]],
                 log_key: str) -> None:
        self._transfers = transfers
        self._gate = gate
        self._caller = caller
        self._package_id = package_id
        self._origin = origin
        self._custody_pages = custody_pages
        self._log_key = log_key
        self._entries: list[tuple[repo.ItemRow, str]] = []
        self._package: repo.PackageRow | None = None
        self._first: Download | None = None
        self._current: Download | None = None
        self._sent = 0
        self._records: dict[str, bytes] | None = None
        self._stream: Iterator[bytes] | None = None

    @property
    def folder(self) -> str:
        return archive_folder(self._package_id)

    def open(self) -> None:
        """Authorise the download of the package, then start the first item's (recorded).

        Raises:
            PackageNotFound, AccessDenied, ShareExpired, ShareRevoked: refused (recorded).
            LedgerUnavailable: the first item's download could not be recorded: nothing is sent.
            IntegrityError: the first item's first chunk is not authentic.
        """
        with self._gate.engine.connect() as conn:
            self._package = self._gate.authorize(conn, self._caller, self._package_id,
                                                 Operation.DOWNLOAD, "download.started")
            self._gate.authorize(conn, self._caller, self._package_id, Operation.READ_CUSTODY,
                                 "custody.read")
            self._entries = layout(repo.package_items(conn, self._package_id))
        first = next((item for item, _ in self._entries if item.kind == "file"), None)
        if first is not None:
            self._first = self._transfers.begin_download(self._caller, self._package_id,
                                                         first.name, _whole)

    def chunks(self) -> Iterator[bytes]:
        """The archive's bytes: blocking (decrypting, recording); run on a worker thread."""
        archive = ZipStream(compress_type=ZIP_STORED)  # evidence is mostly compressed already
        top = self.folder
        for item, local in self._entries:
            if item.kind == "directory":
                archive.mkdir(f"{top}/{local}")
            elif item.kind == "file":
                # ZIP64 is used for an item whose size needs it (zipstream-ng decides by size).
                archive.add(self._item_bytes(item), f"{top}/{local}", size=item.size)
        record = f"{top}/{RECORD_DIR}/{self._package_id}"
        for filename in ("manifest.json", "custody.json", "SHA256SUMS"):
            archive.add(self._record_file(filename), f"{record}/{filename}")
        self._stream = iter(archive)
        return self._stream

    def _item_bytes(self, item: repo.ItemRow) -> Iterator[bytes]:
        download, self._first = self._first, None
        if download is None or download.item.name != item.name:
            download = self._transfers.begin_download(self._caller, self._package_id, item.name,
                                                      _whole)
        self._current, self._sent = download, 0
        checked = 0
        try:
            for chunk in download.chunks:
                if self._sent - checked >= RECHECK_BYTES:
                    self._transfers.recheck(self._caller, download)
                    checked = self._sent
                yield chunk
                self._sent += len(chunk)
        except GeneratorExit:
            raise  # the client went away: close() records the abort
        except Exception as exc:
            self._finish(exc)
            raise
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        download, self._current = self._current, None
        if download is not None:
            self._transfers.finish_download(
                self._caller, self._package_id, download.item.name, sent=self._sent,
                error=error, expected=download.item.size, started_index=download.started_index)

    def _record_file(self, filename: str) -> Iterator[bytes]:
        if self._records is None:
            self._records = self._make_records()
        yield self._records[filename]

    def _make_records(self) -> dict[str, bytes]:
        """The download record, made after the last item (its custody pages include them)."""
        assert self._package is not None
        package = self._package
        received = [{"name": item.name, "local": encode_bytes(local.encode()),
                     "kind": item.kind, "size": item.size, "sha256": item.sha256, "target": None}
                    for item, local in self._entries if item.kind != "link"]
        complete = len(received) == len(self._entries)
        files, _ = record_files(
            {"id": package.id, "case_reference": package.case_reference,
             "owner_authority": package.owner_authority,
             "manifest_sha256": package.manifest_sha256},
            self._origin, received, self._custody_pages(), self._log_key, complete=complete)
        return files

    def close(self, error: BaseException | None) -> None:
        """After the response: an item still in flight is recorded as aborted (with why)."""
        if self._first is not None:  # opened, but the stream never started
            self._current, self._sent, self._first = self._first, 0, None
        if self._current is not None:
            self._finish(error)
