"""C2SP tlog-checkpoints (https://c2sp.org/tlog-checkpoint): the signed head of the ledger.

The body is ``<origin>\\n<tree size>\\n<base64 root hash>\\n`` followed by optional extension
lines, signed as a C2SP note by the log's key, whose name is the origin.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from custody.errors import FormatError, SignatureError
from custody.merkle import HASH_SIZE, MAX_TREE_SIZE
from custody.note import Signer, VerifierKey, open_note, sign_note

__all__ = ["Checkpoint"]

_SIZE_RE = re.compile(r"\A(0|[1-9][0-9]{0,19})\Z", re.ASCII)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's ``origin``, its ``size`` and the RFC 9162 ``root`` over it.

    Raises (constructor):
        ValueError: Empty origin or one with a newline, a size outside [0, 2**64-1], a root that
            is not 32 bytes, or an empty extension line or one with a newline.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise ValueError("origin must be a non-empty single line")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError("size must be an integer in [0, 2**64-1]")
        if len(self.root) != HASH_SIZE:
            raise ValueError(f"root must be {HASH_SIZE} bytes")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in self.extensions:
            if not line or "\n" in line:
                raise ValueError("extension lines must be non-empty single lines")

    def to_note_body(self) -> str:
        """The checkpoint text that gets signed."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_note_body(cls, text: str) -> Checkpoint:
        """Parse checkpoint text (the note body, not yet trusted unless it came from
        :meth:`verify`).

        Raises:
            FormatError: The text is not a checkpoint.
        """
        if not text.endswith("\n"):
            raise FormatError("checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError("checkpoint needs origin, size and root lines")
        origin, size, root_b64, *extensions = lines
        if not _SIZE_RE.match(size):
            raise FormatError(f"checkpoint size {size!r} is not a decimal number")
        try:
            root = base64.b64decode(root_b64, validate=True)
        except binascii.Error:
            raise FormatError("checkpoint root is not base64") from None
        if len(root) != HASH_SIZE:
            raise FormatError(f"checkpoint root is not {HASH_SIZE} bytes")
        try:
            return cls(origin, int(size), root, tuple(extensions))
        except ValueError as exc:
            raise FormatError(f"invalid checkpoint: {exc}") from None

    def sign(self, signer: Signer) -> str:
        """Sign the checkpoint as a note.

        Raises:
            ValueError: ``signer``'s name is not the origin (verifiers require them equal).
        """
        if signer.name != self.origin:
            raise ValueError(f"signer {signer.name!r} is not the origin {self.origin!r}")
        return sign_note(self.to_note_body(), signer)

    @classmethod
    def verify(cls, note: str | bytes, verifier_key: VerifierKey) -> Checkpoint:
        """Verify a signed checkpoint with the log's key and return it.

        Raises:
            FormatError: The note or the checkpoint in it is malformed.
            SignatureError: Not validly signed by ``verifier_key``, or its origin is not the
                key's name.
        """
        checkpoint = cls.from_note_body(open_note(note, [verifier_key]))
        if checkpoint.origin != verifier_key.name:
            raise SignatureError(
                f"checkpoint origin {checkpoint.origin!r} is not the key name {verifier_key.name!r}"
            )
        return checkpoint
