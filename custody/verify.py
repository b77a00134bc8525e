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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from custody._walk import ExportReading, LedgerWalk, VerifiedLedger
from custody.checkpoint import Checkpoint
from custody.entry import Entry
from custody.errors import (
    ChainError,
    ConsistencyProofError,
    FormatError,
    InclusionProofError,
    RollbackError,
)
from custody.export import Export
from custody.merkle import verify_consistency, verify_inclusion
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
    walk = LedgerWalk(trusted_checkpoint)
    for record in export.records:
        walk.add(record)
    return walk.finish(export.header, export.checkpoint_note, verifier_key)


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
    reading = ExportReading(LedgerWalk(trusted_checkpoint), fast_path)
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
    *,
    after: str | None = None,
) -> VerifiedPackage:
    """Verify one package's custody chain, entry by entry, against a signed checkpoint.

    Each entry must belong to ``package_id`` and be proven included at its index in the signed
    tree; the first must start the package chain (``package_prev`` null) -- or, with ``after``
    (the hex leaf hash of the last entry verified on an earlier page), link to that entry -- and
    each next one must link to the one before.  The chain is thereby complete from the package's
    first entry to the last one given; that no entry *follows* the last one given cannot be shown
    from the package's entries alone (verify the whole export for that).

    Raises:
        FormatError, SignatureError: The checkpoint is malformed or not signed by the key;
            or no entries were given.
        ChainError: An entry of another package, or a gap or fork in the package chain (index).
        InclusionProofError: An entry is not in the signed tree at its index (index).
    """
    checkpoint = Checkpoint.verify(checkpoint_note, verifier_key)
    verified: list[Entry] = []
    head: str | None = after
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
