"""Offline verification of the custody ledger -- pure: takes objects and lines, does no I/O.

Three questions a partner authority asks, trusting only the log's public key:

* :func:`verify_export` / :func:`verify_export_lines`: is this whole export exactly the log the
  signed checkpoint commits to (and an append-only extension of a checkpoint I saved before)?
* :func:`verify_consistency_from`: does this newer signed checkpoint extend the one I trust?
* :func:`verify_package`: are these entries of one package, with their inclusion proofs, the
  complete custody chain of that package up to its last entry given, in the signed tree?

Failures raise a :class:`~custody.errors.VerificationError` subclass naming the first bad entry
in reading order (``index``) and what is wrong (``reason``).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from custody.checkpoint import Checkpoint
from custody.entry import Entry
from custody.errors import (
    ChainError,
    ConsistencyProofError,
    ForkError,
    FormatError,
    InclusionProofError,
    LeafHashMismatch,
    RollbackError,
    RootMismatch,
    SequenceError,
)
from custody.canonical_line import CanonicalEntryLine, CheckedRun, check_canonical_entry_line
from custody.export import (
    Export,
    ExportHeader,
    ExportRecord,
    ExportTrailer,
    check_export_end,
    read_export_line,
)
from custody.merkle import HASH_SIZE, CompactRange, verify_consistency, verify_inclusion
from custody.note import VerifierKey

__all__ = [
    "ProvenEntry",
    "VerifiedLedger",
    "VerifiedPackage",
    "verify_consistency_from",
    "verify_export",
    "verify_export_lines",
    "verify_package",
]


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


class _LedgerWalk:
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


def _check_trusted(trusted: Checkpoint | None, verifier_key: VerifierKey) -> None:
    if trusted is not None and trusted.origin != verifier_key.name:
        raise ValueError(
            f"trusted checkpoint is of log {trusted.origin!r}, the key of {verifier_key.name!r}"
        )


def verify_export(
    export: Export, verifier_key: VerifierKey, *, trusted_checkpoint: Checkpoint | None = None
) -> VerifiedLedger:
    """Fully verify an export against the log's key (and a checkpoint trusted earlier).

    Checks, in reading order: each entry's index is its position; its recorded leaf hash is the
    hash of its canonical bytes; ``prev`` is the previous leaf hash; ``package_prev`` is the
    previous leaf hash of the same package; the first ``trusted_checkpoint.size`` entries have
    the trusted root.  Then: the checkpoint is signed by ``verifier_key`` with origin = key name;
    it covers exactly the entries; its root is the root over them; the log is no smaller than
    the trusted checkpoint; the header agrees.

    Args:
        trusted_checkpoint: A checkpoint of this log verified and saved earlier.

    Raises:
        SequenceError, LeafHashMismatch, ChainError: An entry is out of place or altered (index).
        ForkError: The history differs from the trusted checkpoint.
        FormatError, SignatureError: The checkpoint is malformed or not signed by the key.
        RootMismatch: The entries are not the tree the checkpoint signs.
        RollbackError: The log is smaller than the trusted checkpoint (index = first missing).
        ValueError: ``trusted_checkpoint`` is of another log than ``verifier_key``.
    """
    _check_trusted(trusted_checkpoint, verifier_key)
    walk = _LedgerWalk(trusted_checkpoint)
    for record in export.records:
        walk.add(record)
    return walk.finish(export.header, export.checkpoint_note, verifier_key)


class _ExportReading:
    """Reading an export line by line into a :class:`_LedgerWalk` (the state of one
    verification)."""

    __slots__ = ("fast_path", "header", "note", "number", "walk")

    def __init__(self, walk: _LedgerWalk, fast_path: bool) -> None:
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


def verify_export_lines(
    lines: Iterable[bytes | str],
    verifier_key: VerifierKey,
    *,
    trusted_checkpoint: Checkpoint | None = None,
    fast_path: bool = True,
    workers: int = 1,
) -> VerifiedLedger:
    """:func:`verify_export` over export lines, streaming (memory independent of the length).

    Entry lines in the exact layout our exporter writes are checked by
    :mod:`custody.canonical_line` without building :class:`~custody.entry.Entry` objects; any
    other line, and any line that fails a check there, is read the reference way, so the result
    and every error (class, index, line, reason) are those of the reference path.

    Args:
        fast_path: ``False`` reads every line the reference way (for cross-checks and benchmarks).
        workers: More than 1 checks chunks of entry lines in that many worker processes (see
            :mod:`custody.verify_parallel`) once the export proves longer than one chunk; the
            ledger walk stays in this process, so results and errors are the same.  Workers are
            spawned, so a calling script needs the ``if __name__ == "__main__":`` idiom.

    Raises:
        FormatError: A malformed line (with ``line``), or content after the checkpoint line,
            besides everything :func:`verify_export` raises.
        ValueError: As :func:`verify_export`; or ``workers`` < 1.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    _check_trusted(trusted_checkpoint, verifier_key)
    reading = _ExportReading(_LedgerWalk(trusted_checkpoint), fast_path)
    if workers > 1 and fast_path:
        from custody.verify_parallel import feed_in_parallel

        feed_in_parallel(reading, lines, workers)
    else:
        feed = reading.feed
        for line in lines:
            feed(line)
    return reading.finish(verifier_key)


def verify_consistency_from(
    trusted_checkpoint: Checkpoint,
    new_checkpoint_note: str | bytes,
    proof: Sequence[bytes],
    verifier_key: VerifierKey,
) -> Checkpoint:
    """Verify a newer signed checkpoint extends the trusted one; return it (the new trust).

    Raises:
        FormatError, SignatureError: The new checkpoint is malformed or not signed by the key.
        RollbackError: The new checkpoint is smaller than the trusted one.
        ConsistencyProofError: The proof does not show the new tree extends the trusted one.
        ValueError: ``trusted_checkpoint`` is of another log than ``verifier_key``.
    """
    _check_trusted(trusted_checkpoint, verifier_key)
    new = Checkpoint.verify(new_checkpoint_note, verifier_key)
    if new.size < trusted_checkpoint.size:
        raise RollbackError(
            f"new checkpoint size {new.size} is smaller than trusted size "
            f"{trusted_checkpoint.size}",
            index=new.size,
        )
    if trusted_checkpoint.size == 0:  # the empty tree is a prefix of every tree
        if proof:
            raise ConsistencyProofError("no proof is needed from the empty tree")
        return new
    verify_consistency(trusted_checkpoint.size, new.size, proof, trusted_checkpoint.root, new.root)
    return new


@dataclass(frozen=True, slots=True)
class ProvenEntry:
    """An entry with its inclusion proof in the tree of some checkpoint."""

    entry: Entry
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class VerifiedPackage:
    """What a successful :func:`verify_package` established."""

    package_id: str
    checkpoint: Checkpoint
    entries: tuple[Entry, ...]


def verify_package(
    entries_with_inclusion_proofs: Iterable[ProvenEntry | tuple[Entry, Sequence[bytes]]],
    checkpoint_note: str | bytes,
    verifier_key: VerifierKey,
    package_id: str,
) -> VerifiedPackage:
    """Verify one package's custody chain, entry by entry, against a signed checkpoint.

    Each entry must belong to ``package_id`` and be proven included at its index in the signed
    tree; the first must start the package chain (``package_prev`` null) and each next one must
    link to the one before.  The chain is thereby complete from the package's first entry to the
    last one given; that no entry *follows* the last one given cannot be shown from the package's
    entries alone (verify the whole export for that).

    Raises:
        FormatError, SignatureError: The checkpoint is malformed or not signed by the key;
            or no entries were given.
        ChainError: An entry of another package, or a gap or fork in the package chain (index).
        InclusionProofError: An entry is not in the signed tree at its index (index).
    """
    checkpoint = Checkpoint.verify(checkpoint_note, verifier_key)
    verified: list[Entry] = []
    head: str | None = None
    for item in entries_with_inclusion_proofs:
        entry, proof = (item.entry, item.proof) if isinstance(item, ProvenEntry) else item
        index = entry.index
        if entry.package != package_id:
            raise ChainError(
                f"entry belongs to package {entry.package!r}, not {package_id!r}", index=index
            )
        try:
            verify_inclusion(entry.leaf_hash(), index, checkpoint.size, proof, checkpoint.root)
        except InclusionProofError as exc:
            raise InclusionProofError(exc.reason, index=index) from None
        if entry.package_prev != head:
            expected = "null (first entry of the package)" if head is None else head
            raise ChainError(f"package_prev {entry.package_prev} should be {expected}", index=index)
        head = entry.leaf_hash().hex()
        verified.append(entry)
    if not verified:
        raise FormatError(f"no entries given for package {package_id!r}")
    return VerifiedPackage(package_id, checkpoint, tuple(verified))
