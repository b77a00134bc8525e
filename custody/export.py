"""The JSON Lines ledger export a partner authority verifies offline.

Layout (UTF-8, one JSON object per ``\\n``-terminated line)::

    {"format": "evx-ledger-export", "version": 1, "origin": "<origin>", "tree_size": N}
    {"leaf_hash": "<hex>", "entry": <entry object>}        (N lines, in index order)
    {"checkpoint": "<signed note text>"}

:func:`write_export` streams it out; :func:`iter_export` streams it in item by item (so a
verifier holds one entry at a time) and :func:`read_export` collects it into an :class:`Export`.
Reading does no I/O of its own: it takes any iterable of lines, e.g. a file opened in binary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from custody import jcs
from custody.checkpoint import Checkpoint
from custody.entry import MAX_ENTRY_BYTES, Entry
from custody.errors import FormatError
from custody.note import MAX_NOTE_BYTES, parse_note

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "MAX_LINE_BYTES",
    "Export",
    "ExportHeader",
    "ExportItem",
    "ExportRecord",
    "ExportTrailer",
    "check_export_end",
    "iter_export",
    "read_export",
    "read_export_line",
    "write_export",
]

EXPORT_FORMAT = "evx-ledger-export"
EXPORT_VERSION = 1
# An entry line is the entry (at most MAX_ENTRY_BYTES canonical, escapes may double it in other
# encodings) plus the leaf hash; the checkpoint line is a note.  Anything longer is hostile.
MAX_LINE_BYTES = 2 * max(MAX_ENTRY_BYTES, MAX_NOTE_BYTES) + 1024

_HEX_HASH_RE = re.compile(r"\A[0-9a-f]{64}\Z", re.ASCII)
_HEADER_KEYS = frozenset(("format", "version", "origin", "tree_size"))
_RECORD_KEYS = frozenset(("leaf_hash", "entry"))
_TRAILER_KEYS = frozenset(("checkpoint",))


@dataclass(frozen=True, slots=True)
class ExportHeader:
    """The first line: which log, and how many entries the exporter says follow."""

    origin: str
    tree_size: int


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """One entry line: the entry and the leaf hash the exporter recorded for it."""

    leaf_hash: bytes
    entry: Entry


@dataclass(frozen=True, slots=True)
class ExportTrailer:
    """The last line: the signed checkpoint note (not yet verified)."""

    checkpoint_note: str


ExportItem = ExportHeader | ExportRecord | ExportTrailer


@dataclass(frozen=True, slots=True)
class Export:
    """A whole export, read but not verified."""

    header: ExportHeader
    records: tuple[ExportRecord, ...]
    checkpoint_note: str


def write_export(
    entries: Iterable[Entry],
    leaf_hashes: Iterable[bytes] | None,
    checkpoint_note: str,
    out: IO[bytes],
) -> int:
    """Stream an export to ``out`` and return the number of entries written.

    Writes exactly what it is given -- ``leaf_hashes`` as stored (``None``: computed from the
    entries), entries as they are -- so a verifier, not the writer, judges the result.  The
    header's origin and tree size come from the checkpoint.

    Raises:
        FormatError: ``checkpoint_note`` is not a signed checkpoint note (not verified here).
        ValueError: ``leaf_hashes`` and ``entries`` differ in length, or a hash is not 32 bytes.
    """
    checkpoint = Checkpoint.from_note_body(parse_note(checkpoint_note).text)
    header: dict[str, jcs.JSONValue] = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
              "origin": checkpoint.origin, "tree_size": checkpoint.size}
    out.write(jcs.canonicalize(header) + b"\n")
    count = 0
    pairs: Iterable[tuple[Entry, bytes]]
    if leaf_hashes is None:
        pairs = ((entry, entry.leaf_hash()) for entry in entries)
    else:
        pairs = zip(entries, leaf_hashes, strict=True)
    for entry, leaf in pairs:
        if len(leaf) != 32:
            raise ValueError("leaf hash must be 32 bytes")
        out.write(
            b'{"entry":'
            + entry.canonical_bytes()
            + b',"leaf_hash":"'
            + leaf.hex().encode()
            + b'"}\n'
        )
        count += 1
    out.write(jcs.canonicalize({"checkpoint": checkpoint_note}) + b"\n")
    return count


def _load(line: bytes | str, number: int, position: int | None) -> dict[str, object]:
    """Parse one line; ``position`` is the entry position the line would hold, for errors."""
    if len(line) > MAX_LINE_BYTES:
        raise FormatError(f"line longer than {MAX_LINE_BYTES} bytes", index=position, line=number)
    line = line.removesuffix(b"\n") if isinstance(line, bytes) else line.removesuffix("\n")
    try:
        obj = jcs.loads_strict(line)
    except ValueError as exc:
        raise FormatError(str(exc), index=position, line=number) from None
    if not isinstance(obj, dict):
        raise FormatError("line is not a JSON object", index=position, line=number)
    return obj


def _header(obj: dict[str, object]) -> ExportHeader:
    if obj.keys() != _HEADER_KEYS:
        raise FormatError("first line is not an export header", line=1)
    if (
        obj["format"] != EXPORT_FORMAT
        or type(obj["version"]) is not int
        or obj["version"] != EXPORT_VERSION
    ):
        raise FormatError(f"not a {EXPORT_FORMAT} version {EXPORT_VERSION} file", line=1)
    origin, size = obj["origin"], obj["tree_size"]
    if not isinstance(origin, str) or not origin or type(size) is not int or size < 0:
        raise FormatError("header origin or tree_size invalid", line=1)
    return ExportHeader(origin, size)


def read_export_line(
    line: bytes | str, number: int, position: int, *, after_checkpoint: bool = False
) -> ExportItem:
    """Parse line ``number`` (1-based) of an export, the reference way: one step of
    :func:`iter_export`.

    ``position`` is the number of entry lines before it (the entry position it would hold);
    ``after_checkpoint`` says whether the checkpoint line was already read.

    Raises:
        FormatError: As :func:`iter_export`, for this line.
    """
    if after_checkpoint:
        raise FormatError("content after the checkpoint line", line=number)
    obj = _load(line, number, None if number == 1 else position)
    if number == 1:
        return _header(obj)
    keys = obj.keys()
    if keys == _RECORD_KEYS:
        leaf, raw_entry = obj["leaf_hash"], obj["entry"]
        if not isinstance(leaf, str) or not _HEX_HASH_RE.match(leaf):
            raise FormatError(
                "leaf_hash must be 64 lowercase hex digits", index=position, line=number
            )
        try:
            entry = Entry.from_dict(raw_entry)
        except FormatError as exc:
            raise FormatError(exc.reason, index=position, line=number) from None
        return ExportRecord(bytes.fromhex(leaf), entry)
    if keys == _TRAILER_KEYS:
        note = obj["checkpoint"]
        if not isinstance(note, str):
            raise FormatError("checkpoint must be a string", line=number)
        return ExportTrailer(note)
    raise FormatError("line is neither an entry nor the checkpoint", index=position, line=number)


def check_export_end(lines_read: int, checkpoint_read: bool) -> None:
    """The end-of-input checks of :func:`iter_export`.

    Raises:
        FormatError: The export was empty or did not end with the checkpoint line.
    """
    if lines_read == 0:
        raise FormatError("export is empty", line=1)
    if not checkpoint_read:
        raise FormatError("export ends without a checkpoint line", line=lines_read + 1)


def iter_export(lines: Iterable[bytes | str]) -> Iterator[ExportItem]:
    """Parse an export line by line: the header, each record, then the trailer.

    Raises:
        FormatError: A malformed line (``line`` is its 1-based number; ``index`` is the entry's
            position for entry lines), lines out of order, or a missing checkpoint line.
    """
    number = 0
    position = 0
    done = False
    for number, line in enumerate(lines, start=1):
        item = read_export_line(line, number, position, after_checkpoint=done)
        if isinstance(item, ExportRecord):
            position += 1
        elif isinstance(item, ExportTrailer):
            done = True
        yield item
    check_export_end(number, done)


def read_export(lines: Iterable[bytes | str]) -> Export:
    """Read a whole export into memory (see :func:`iter_export` to stream).

    Raises:
        FormatError: As :func:`iter_export`.
    """
    header: ExportHeader | None = None
    records: list[ExportRecord] = []
    note = ""
    for item in iter_export(lines):
        if isinstance(item, ExportHeader):
            header = item
        elif isinstance(item, ExportRecord):
            records.append(item)
        else:
            note = item.checkpoint_note
    assert header is not None  # iter_export yields the header first or raises
    return Export(header, tuple(records), note)


def dumps_export(export: Export) -> bytes:
    """Serialize an :class:`Export` model back to export bytes (for tests and tools)."""
    lines = [
        jcs.canonicalize(
            {
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "origin": export.header.origin,
                "tree_size": export.header.tree_size,
            }
        )
    ]
    for record in export.records:
        lines.append(
            json.dumps(
                {"entry": record.entry.to_dict(), "leaf_hash": record.leaf_hash.hex()},
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode()
        )
    lines.append(jcs.canonicalize({"checkpoint": export.checkpoint_note}))
    return b"\n".join(lines) + b"\n"
