"""The decisions of a C2SP tlog-witness (https://c2sp.org/tlog-witness), as pure code.

:func:`parse_add_checkpoint` reads an ``add-checkpoint`` request body; :func:`check_add_checkpoint`
decides, given the witness's latest cosigned checkpoint for the log, whether the submitted
checkpoint may be cosigned. Storage (the compare-and-swap) and HTTP are the caller's; each
refusal is its own error class so that the caller maps it to the protocol's status code:

=============================  ======  =========================================================
error                          status  when
=============================  ======  =========================================================
:class:`MalformedRequest`      400     body not in the protocol's shape; old size > new size
:class:`UnknownLog`            404     the checkpoint's origin is not a log the witness watches
:class:`UntrustedCheckpoint`   403     no valid signature by the log's key (or a bad one)
:class:`SizeConflict`          409     old size is not the size the witness last cosigned
:class:`BadConsistencyProof`   422     proof does not verify; empty-tree root wrong; same size,
                                       other root; a proof sent from size 0
=============================  ======  =========================================================
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from custody.checkpoint import Checkpoint
from custody.errors import CustodyError, FormatError, SignatureError, VerificationError
from custody.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from custody.note import MAX_NOTE_BYTES, VerifierKey, open_note, parse_note

__all__ = [
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "AddCheckpoint",
    "BadConsistencyProof",
    "MalformedRequest",
    "SizeConflict",
    "UnknownLog",
    "UntrustedCheckpoint",
    "WitnessRefusal",
    "WitnessedState",
    "check_add_checkpoint",
    "format_add_checkpoint",
    "origin_hash",
    "parse_add_checkpoint",
]

MAX_PROOF_LINES = 63  # tlog-witness: a client MUST NOT send more
# The old size line, 63 base64 hashes and a note: anything larger is not a request.
MAX_REQUEST_BYTES = 32 + MAX_PROOF_LINES * 45 + 1 + MAX_NOTE_BYTES
_OLD_RE = re.compile(r"\Aold (0|[1-9][0-9]{0,19})\Z", re.ASCII)


class WitnessRefusal(CustodyError):
    """The witness does not cosign; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class MalformedRequest(WitnessRefusal):
    """The request is not an add-checkpoint request, or its old size exceeds the new size."""


class UnknownLog(WitnessRefusal):
    """The checkpoint's origin is not a log this witness watches."""


class UntrustedCheckpoint(WitnessRefusal):
    """The checkpoint carries no valid signature by a key the witness trusts for the origin."""


class BadConsistencyProof(WitnessRefusal):
    """The checkpoint is not shown to extend what the witness cosigned before."""


class SizeConflict(WitnessRefusal):
    """The old size is not the size of the witness's latest cosigned checkpoint.

    Attributes:
        current_size: That size (0 if it never cosigned one for the log).
    """

    def __init__(self, reason: str, *, current_size: int) -> None:
        self.current_size = current_size
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed add-checkpoint request (the checkpoint note not yet verified)."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str


@dataclass(frozen=True, slots=True)
class WitnessedState:
    """The witness's latest cosigned checkpoint of one log."""

    size: int
    root: bytes


def origin_hash(origin: str) -> str:
    """The lowercase hex SHA-256 of an origin (the monitoring path's key)."""
    return hashlib.sha256(origin.encode()).hexdigest()


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The add-checkpoint request body (the log's side of the protocol).

    Raises:
        ValueError: More than 63 proof hashes, or a negative old size.
    """
    if old_size < 0 or len(proof) > MAX_PROOF_LINES:
        raise ValueError("old size must be >= 0 and the proof at most 63 hashes")
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Read an add-checkpoint request body.

    Raises:
        MalformedRequest: Too large, not UTF-8, or not ``old N`` / proof lines / empty line /
            a signed note.
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise MalformedRequest(f"request exceeds {MAX_REQUEST_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("request is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise MalformedRequest("request has no empty line before the checkpoint")
    lines = head.split("\n")
    match = _OLD_RE.match(lines[0])
    if match is None:
        raise MalformedRequest("first line must be 'old <size>' (decimal, no leading zeroes)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise MalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            value = base64.b64decode(line, validate=True)
        except binascii.Error:
            value = b""
        if len(value) != HASH_SIZE or base64.b64encode(value).decode() != line:
            raise MalformedRequest("a consistency proof line is not a base64 SHA-256 hash")
        proof.append(value)
    return AddCheckpoint(int(match.group(1)), tuple(proof), note)


def check_add_checkpoint(request: AddCheckpoint, logs: Mapping[str, Sequence[VerifierKey]],
                         latest: WitnessedState | None) -> Checkpoint:
    """Decide whether to cosign ``request`` given the witness's ``latest`` cosigned state of the
    log (``None`` if it never cosigned one); return the checkpoint to cosign.

    The checks run in the specification's order; the caller must store the result with a
    compare-and-swap against ``latest`` (two requests may pass against the same state).

    Raises:
        MalformedRequest, UnknownLog, UntrustedCheckpoint, SizeConflict, BadConsistencyProof:
            as in the module's table.
    """
    try:
        checkpoint = Checkpoint.from_note_body(parse_note(request.note).text)
    except FormatError as exc:
        raise MalformedRequest(f"not a signed checkpoint: {exc.reason}") from None
    keys = logs.get(checkpoint.origin)
    if not keys:
        raise UnknownLog(f"unknown log origin {checkpoint.origin!r}")
    try:
        open_note(request.note, keys)
    except SignatureError as exc:
        raise UntrustedCheckpoint(f"checkpoint not signed by the log: {exc.reason}") from None
    except FormatError as exc:  # pragma: no cover - parse_note accepted it above
        raise MalformedRequest(exc.reason) from None
    if request.old_size > checkpoint.size:
        raise MalformedRequest(f"old size {request.old_size} exceeds checkpoint size "
                               f"{checkpoint.size}")
    current = latest.size if latest is not None else 0
    if request.old_size != current:
        raise SizeConflict(f"old size {request.old_size} is not the witnessed size {current}",
                           current_size=current)
    if checkpoint.size == 0 and not hmac.compare_digest(checkpoint.root, EMPTY_ROOT):
        raise BadConsistencyProof("a checkpoint of size 0 must have the empty tree's root")
    if request.old_size == 0:
        if request.proof:
            raise BadConsistencyProof("no consistency proof is sent from size 0")
        return checkpoint
    assert latest is not None
    try:
        verify_consistency(latest.size, checkpoint.size, request.proof, latest.root,
                           checkpoint.root)
    except VerificationError as exc:
        raise BadConsistencyProof(f"checkpoint does not extend the witnessed one of size "
                                  f"{latest.size}: {exc.reason}") from None
    return checkpoint
