"""The state of one ledger verification, package-internal: the walk over entries in order
(:class:`LedgerWalk`) and the reading of an export's lines into it (:class:`ExportReading`).

Shared by :mod:`custody.verify` and :mod:`custody.verify_parallel`, which both import it, so
neither imports the other's internals.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from custody.canonical_line import CanonicalEntryLine, CheckedRun, check_canonical_entry_line
from custody.checkpoint import Checkpoint
from custody.errors import (
    ChainError,
    ForkError,
    FormatError,
    LeafHashMismatch,
    RollbackError,
    RootMismatch,
    SequenceError,
)
from custody.export import (
    ExportHeader,
    ExportRecord,
    ExportTrailer,
    check_export_end,
    read_export_line,
)
from custody.merkle import HASH_SIZE, CompactRange
from custody.note import VerifierKey

__all__ = ["ExportReading", "LedgerWalk", "VerifiedLedger"]


@dataclass(frozen=True, slots=True)
class VerifiedLedger:
    """What a successful :func:`verify_export` established.

    ``checkpoint_note`` is the verified signed note: save it and pass its checkpoint as
    ``trusted_checkpoint`` next time to detect truncation and rewrites.
    """

    checkpoint: Checkpoint
    checkpoint_note: str
    entry_count: int
    package_count: int

    @property
    def origin(self) -> str:
        """The log's origin (its key name)."""
        return self.checkpoint.origin

    @property
    def tree_size(self) -> int:
        """Number of entries = size of the verified tree."""
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        """The verified RFC 9162 root."""
        return self.checkpoint.root


class LedgerWalk:
    """Checks entries one at a time, in order, keeping O(log n + packages) state."""

    __slots__ = ("_compact", "_heads", "_prev", "_trusted")

    def __init__(self, trusted: Checkpoint | None) -> None:
        self._compact = CompactRange()
        self._heads: dict[str, str] = {}
        self._prev: str | None = None
        self._trusted = trusted
        self._check_trusted_prefix()

    @property
    def count(self) -> int:
        return self._compact.size

    def add(self, record: ExportRecord) -> None:
        position = self._compact.size
        entry = record.entry
        if entry.index != position:
            raise SequenceError(
                f"entry at position {position} has index {entry.index}", index=position
            )
        leaf = entry.leaf_hash()
        if not hmac.compare_digest(leaf, record.leaf_hash):
            raise LeafHashMismatch(
                "recorded leaf hash is not the hash of the entry", index=position
            )
        # Entry guarantees prev is None exactly at index 0.
        if entry.prev is not None and not hmac.compare_digest(entry.prev, self._prev or ""):
            raise ChainError(
                f"prev {entry.prev} is not the leaf hash of entry {position - 1}", index=position
            )
        leaf_hex = leaf.hex()
        if entry.package is not None:
            head = self._heads.get(entry.package)
            if entry.package_prev != head:
                expected = "null (first entry of the package)" if head is None else head
                raise ChainError(
                    f"package_prev {entry.package_prev} of package {entry.package!r} "
                    f"should be {expected}",
                    index=position,
                )
            self._heads[entry.package] = leaf_hex
        self._prev = leaf_hex
        self._compact.append(leaf)
        self._check_trusted_prefix()

    def add_checked(self, line: CanonicalEntryLine) -> bool:
        """Take an entry line :mod:`custody.canonical_line` accepted, if it is in its place.

        Returns ``False`` and changes nothing when it is not (wrong index, broken chain): the
        caller then reads the line the reference way and :meth:`add` raises the exact error.
        Raises ForkError as :meth:`add` does.
        """
        if line.entry_index != self._compact.size or line.prev != self._prev:
            return False
        package = line.package
        if package is not None:
            heads = self._heads
            if line.package_prev != heads.get(package):
                return False
            heads[package] = line.leaf_hex
        self._prev = line.leaf_hex
        self._compact.append(line.leaf_hash)
        if self._trusted is not None:
            self._check_trusted_prefix()
        return True

    def add_checked_run(self, run: CheckedRun) -> bool:
        """Take a run of consecutive entry lines a worker checked, if it continues the ledger.

        The worker checked each line (as :meth:`add_checked` expects) and the links inside the
        run; here only the links into it are checked: its start, its first ``prev``, and the
        ``package_prev`` of each package's first entry in it.  Returns ``False`` and changes
        nothing when one does not hold (the caller then reads the lines one by one and the
        exact error surfaces).  Raises ForkError as :meth:`add` does.
        """
        heads = self._heads
        if run.start != self._compact.size or run.first_prev != self._prev:
            return False
        for package, package_prev in run.first_package_prevs.items():
            if heads.get(package) != package_prev:
                return False
        heads.update(run.last_package_leaves)
        self._prev = run.last_leaf_hex
        trusted = self._trusted
        compact = self._compact
        end = run.start + run.entries
        if run.subtree is not None and (trusted is None or not run.start < trusted.size < end):
            compact.append_subtree(run.entries.bit_length() - 1, run.subtree)
            self._check_trusted_prefix()
        else:
            leaves = run.leaf_hashes
            for offset in range(0, len(leaves), HASH_SIZE):
                compact.append(leaves[offset:offset + HASH_SIZE])
                if trusted is not None:
                    self._check_trusted_prefix()
        return True

    def _check_trusted_prefix(self) -> None:
        trusted = self._trusted
        if (
            trusted is not None
            and self._compact.size == trusted.size
            and not hmac.compare_digest(self._compact.root(), trusted.root)
        ):
            raise ForkError(
                f"the first {trusted.size} entries are not the ones of the trusted checkpoint "
                "(history was rewritten)"
            )

    def finish(self, header: ExportHeader, note: str, verifier_key: VerifierKey) -> VerifiedLedger:
        checkpoint = Checkpoint.verify(note, verifier_key)
        count = self._compact.size
        if count != checkpoint.size:
            raise SequenceError(
                f"export has {count} entries, the checkpoint covers {checkpoint.size}",
                index=min(count, checkpoint.size),
            )
        if not hmac.compare_digest(self._compact.root(), checkpoint.root):
            raise RootMismatch("root over the entries is not the checkpoint's root")
        if self._trusted is not None and count < self._trusted.size:
            raise RollbackError(
                f"log has {count} entries, fewer than the {self._trusted.size} of the trusted "
                "checkpoint",
                index=count,
            )
        if header.origin != checkpoint.origin or header.tree_size != checkpoint.size:
            raise FormatError("export header disagrees with the checkpoint", line=1)
        return VerifiedLedger(checkpoint, note, count, len(self._heads))


class ExportReading:
    """Reading an export line by line into a :class:`LedgerWalk` (the state of one
    verification)."""

    __slots__ = ("fast_path", "header", "note", "number", "walk")

    def __init__(self, walk: LedgerWalk, fast_path: bool) -> None:
        self.walk = walk
        self.fast_path = fast_path
        self.header: ExportHeader | None = None
        self.note: str | None = None
        self.number = 0  # lines read so far

    def feed(self, line: bytes | str) -> None:
        """Read the next line: the fast path when it applies, else the reference path."""
        self.number = number = self.number + 1
        if self.fast_path and number > 1 and self.note is None:
            checked = check_canonical_entry_line(line)
            if checked is not None and self.walk.add_checked(checked):
                return
        item = read_export_line(
            line, number, self.walk.count, after_checkpoint=self.note is not None
        )
        if isinstance(item, ExportRecord):
            self.walk.add(item)
        elif isinstance(item, ExportTrailer):
            self.note = item.checkpoint_note
        else:
            self.header = item

    def finish(self, verifier_key: VerifierKey) -> VerifiedLedger:
        check_export_end(self.number, self.note is not None)
        assert self.header is not None and self.note is not None  # line 1 / check_export_end
        return self.walk.finish(self.header, self.note, verifier_key)
