"""The one error hierarchy of the custody ledger.

Grouped by where a failure comes from, as in python-tuf:

* :class:`VerificationError` and its subclasses: *untrusted data is bad* -- an export, an entry,
  a proof, a signed note or a checkpoint does not verify.  Each carries ``index``, the index of
  the first bad entry when one can be named (``None`` otherwise), and ``reason``, a short human
  explanation.  A verifier that catches :class:`VerificationError` has caught every way in which
  evidence can fail to check out.
* Caller misuse (an impossible tree size, a negative index, a missing stored node) is a plain
  :class:`ValueError`; it never means the data is bad, it means the code calling us is wrong.
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "ConsistencyProofError",
    "CustodyError",
    "ForkError",
    "FormatError",
    "InclusionProofError",
    "LeafHashMismatch",
    "RollbackError",
    "RootMismatch",
    "SequenceError",
    "SignatureError",
    "VerificationError",
]


class CustodyError(Exception):
    """Base class of every error raised on purpose by the ``custody`` package."""


class VerificationError(CustodyError):
    """Untrusted data failed verification.

    Attributes:
        reason: What is wrong, in words.
        index: Index of the first bad entry, or ``None`` when no single entry can be blamed
            (a bad signature, a wrong root over otherwise consistent entries).
    """

    def __init__(self, reason: str, *, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        super().__init__(f"entry {index}: {reason}" if index is not None else reason)


class FormatError(VerificationError):
    """Malformed entry, note, checkpoint, proof or export (it cannot even be read as one).

    Attributes:
        line: 1-based line of the export the problem is on, when reading an export.
    """

    def __init__(self, reason: str, *, index: int | None = None, line: int | None = None) -> None:
        self.line = line
        super().__init__(reason, index=index)
        if line is not None:
            self.args = (f"line {line}: {self.args[0]}",)


class SequenceError(VerificationError):
    """An entry is not where its index says it is, or entries are missing or surplus."""


class ChainError(VerificationError):
    """A ``prev``/``package_prev`` link does not point at the entry it must point at."""


class LeafHashMismatch(VerificationError):
    """The leaf hash recorded for an entry is not the hash of the entry's canonical bytes."""


class RootMismatch(VerificationError):
    """The Merkle root over the entries is not the root the checkpoint commits to."""


class InclusionProofError(VerificationError):
    """An inclusion proof does not show the entry in the tree of the checkpoint."""


class ConsistencyProofError(VerificationError):
    """A consistency proof does not show the new tree extends the old one."""


class RollbackError(VerificationError):
    """The log is smaller than a checkpoint trusted earlier: entries were removed from the tail."""


class ForkError(VerificationError):
    """The log's history differs from a checkpoint trusted earlier: entries were rewritten."""


class SignatureError(VerificationError):
    """A signed note has no valid signature by a trusted key, or a trusted key's signature is
    bad."""
