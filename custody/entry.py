"""The ledger entry (versions 1 and 2): an immutable model validated in its constructor.

Version 2 adds ``token``: the issuer key (``kid`` and RFC 7638 thumbprint ``jkt``) and token id
(``jti``) of the officer's token behind the entry, ``null`` for system actors.  The log writes
version 2; version-1 entries (written before) are read and verified unchanged.

An :class:`Entry` that exists is valid: every rule of ``coord/entry-contract.md`` holds, its
canonical (RFC 8785) bytes and RFC 9162 leaf hash are computed once at construction.  Build one
from trusted values with ``Entry(...)``, from untrusted data with :meth:`Entry.from_dict` or
:meth:`Entry.from_json_bytes`; both raise :class:`~custody.errors.FormatError` on any violation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from custody import jcs, merkle
from custody.errors import FormatError

__all__ = [
    "ACTOR_KEYS",
    "ENTRY_KEYS",
    "ENTRY_VERSION",
    "HEX_HASH_RE",
    "LEGAL_KEYS",
    "MAX_ENTRY_BYTES",
    "SUPPORTED_VERSIONS",
    "TIME_RE",
    "Action",
    "Actor",
    "DetailValue",
    "Entry",
    "Legal",
    "Outcome",
    "Role",
    "TokenRef",
    "format_time",
    "token_valid",
]

ENTRY_VERSION = 2  # the version the log writes
SUPPORTED_VERSIONS = frozenset((1, 2))
# Canonical entries are a few hundred bytes; the bound keeps a hostile export from making the
# verifier hash and hold arbitrarily large objects.
MAX_ENTRY_BYTES = 64 * 1024

DetailValue = str | int | bool | None

TIME_RE = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z", re.ASCII)
HEX_HASH_RE = re.compile(r"\A[0-9a-f]{64}\Z", re.ASCII)
_KEYS_V1 = frozenset(
    ("v", "index", "time", "actor", "action", "package", "item", "outcome", "reason", "legal",
     "details", "prev", "package_prev")
)
_KEYS_V2 = _KEYS_V1 | {"token"}
ENTRY_KEYS = {1: _KEYS_V1, 2: _KEYS_V2}  # version -> the exact key set of its entries
ACTOR_KEYS = frozenset(("authority", "subject", "role"))
_TOKEN_KEYS = frozenset(("kid", "jkt", "jti"))
# An RFC 7638 SHA-256 thumbprint: 32 bytes, unpadded base64url.
_JKT_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z", re.ASCII)
LEGAL_KEYS = frozenset(("basis", "request_reference"))


class Action(StrEnum):
    """What was done (or attempted, when the outcome is ``denied``)."""

    PACKAGE_CREATED = "package.created"
    ITEM_UPLOADED = "item.uploaded"
    ITEM_UPLOAD_FAILED = "item.upload_failed"
    PACKAGE_SEALED = "package.sealed"
    SHARE_CREATED = "share.created"
    SHARE_REVOKED = "share.revoked"
    PACKAGE_READ = "package.read"
    PACKAGE_LISTED = "package.listed"
    DOWNLOAD_STARTED = "download.started"
    DOWNLOAD_COMPLETED = "download.completed"
    DOWNLOAD_ABORTED = "download.aborted"
    DOWNLOAD_VERIFIED = "download.verified"
    CUSTODY_READ = "custody.read"
    LEDGER_READ = "ledger.read"
    LEDGER_EXPORTED = "ledger.exported"
    KEY_ROTATED = "key.rotated"
    AUTHORITY_ADDED = "authority.added"
    AUTHORITY_KEY_ADDED = "authority.key_added"
    AUTHORITY_KEY_RETIRED = "authority.key_retired"
    # Mutual legal assistance requests: ``package`` holds the request id (``req_...``).
    REQUEST_FILED = "request.filed"
    REQUEST_ACKNOWLEDGED = "request.acknowledged"
    REQUEST_INFO_REQUESTED = "request.info_requested"
    REQUEST_INFO_PROVIDED = "request.info_provided"
    REQUEST_RECOGNISED = "request.recognised"
    REQUEST_REFUSED = "request.refused"
    REQUEST_POSTPONED = "request.postponed"
    REQUEST_EXECUTED = "request.executed"
    REQUEST_FULFILLED = "request.fulfilled"
    REQUEST_WITHDRAWN = "request.withdrawn"
    REQUEST_DELIVERED = "request.delivered"
    REQUEST_READ = "request.read"
    REQUEST_LISTED = "request.listed"
    REQUESTS_THROTTLED = "requests.throttled"


class Outcome(StrEnum):
    """How the attempt ended."""

    ALLOWED = "allowed"
    DENIED = "denied"
    FAILED = "failed"


class Role(StrEnum):
    """The role the actor acted in."""

    INVESTIGATOR = "investigator"
    AUDITOR = "auditor"
    OPERATOR = "operator"
    SYSTEM = "system"


def _str(value: object, what: str, index: int | None) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{what} must be a string", index=index)
    return value


def _opt_str(value: object, what: str, index: int | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise FormatError(f"{what} must be a non-empty string or null", index=index)
    return value


# Value -> member tables: a dict lookup is several times faster than calling the enum, and
# members hash and compare as their values, so passing a member finds itself.
_MEMBERS: dict[type[StrEnum], dict[str, StrEnum]] = {}


def _enum(
    kind: type[Action] | type[Outcome] | type[Role], value: object, what: str, index: int | None
) -> Any:
    table = _MEMBERS.get(kind)
    if table is None:
        table = _MEMBERS[kind] = {member.value: member for member in kind}
    member = table.get(value) if isinstance(value, str) else None
    if member is None:
        raise FormatError(f"{what} {value!r} is not one of the contract's values", index=index)
    return member


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: their authority, their identity there, and their role."""

    authority: str
    subject: str
    role: Role

    def __post_init__(self) -> None:
        _str(self.authority, "actor.authority", None)
        _str(self.subject, "actor.subject", None)
        object.__setattr__(self, "role", _enum(Role, self.role, "actor.role", None))


@dataclass(frozen=True, slots=True)
class Legal:
    """The legal basis of the access and the reference of the request behind it."""

    basis: str
    request_reference: str

    def __post_init__(self) -> None:
        _str(self.basis, "legal.basis", None)
        _str(self.request_reference, "legal.request_reference", None)


@dataclass(frozen=True, slots=True)
class TokenRef:
    """The officer's token behind an entry (version 2): the issuer's key and the token id.

    ``kid`` is the JWS header's key id; ``jkt`` the RFC 7638 SHA-256 thumbprint (unpadded
    base64url) of the public key that verified the token; ``jti`` the token's id.
    """

    kid: str
    jkt: str
    jti: str

    def __post_init__(self) -> None:
        for name in ("kid", "jti"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise FormatError(f"token.{name} must be a non-empty string")
        if not isinstance(self.jkt, str) or not _JKT_RE.match(self.jkt):
            raise FormatError(
                "token.jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)"
            )


def token_valid(value: object) -> bool:
    """``value`` is the JSON form of a :class:`TokenRef` (for the fast path, exact types)."""
    return (type(value) is dict and value.keys() == _TOKEN_KEYS
            and type(value["kid"]) is str and bool(value["kid"])
            and type(value["jti"]) is str and bool(value["jti"])
            and type(value["jkt"]) is str and _JKT_RE.match(value["jkt"]) is not None)


def format_time(moment: datetime) -> str:
    """Format an aware datetime as the contract's ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC).

    Raises:
        ValueError: ``moment`` is naive.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry.  Immutable; valid by construction.

    ``prev`` and ``package_prev`` are lowercase hex, as in the JSON form.

    Raises (constructor):
        FormatError: Any contract rule is broken (with ``index`` set when the index is known).
    """

    index: int
    time: str
    actor: Actor
    action: Action
    outcome: Outcome
    package: str | None = None
    item: str | None = None
    reason: str | None = None
    legal: Legal | None = None
    details: Mapping[str, DetailValue] = field(default_factory=dict, hash=False)
    prev: str | None = None
    package_prev: str | None = None
    token: TokenRef | None = None
    v: int = ENTRY_VERSION
    _canonical: bytes = field(init=False, repr=False, compare=False, hash=False)
    _leaf_hash: bytes = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index = self.index
        if type(index) is not int or not 0 <= index <= jcs.MAX_SAFE_INTEGER:
            raise FormatError("index must be an integer in [0, 2**53-1]")
        if type(self.v) is not int or self.v not in SUPPORTED_VERSIONS:
            raise FormatError(f"unsupported entry version {self.v!r}", index=index)
        if self.token is not None and (self.v < 2 or not isinstance(self.token, TokenRef)):
            raise FormatError("token must be a TokenRef, in entries of version 2", index=index)
        set_ = object.__setattr__
        time = _str(self.time, "time", index)
        if not TIME_RE.match(time):
            raise FormatError(f"time {time!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ", index=index)
        try:
            datetime.fromisoformat(time[:-1])
        except ValueError:
            raise FormatError(f"time {time!r} is not a real date and time", index=index) from None
        if not isinstance(self.actor, Actor):
            raise FormatError("actor must be an Actor", index=index)
        set_(self, "action", _enum(Action, self.action, "action", index))
        outcome = _enum(Outcome, self.outcome, "outcome", index)
        set_(self, "outcome", outcome)
        _opt_str(self.package, "package", index)
        _opt_str(self.item, "item", index)
        if self.reason is not None:
            _str(self.reason, "reason", index)
        if outcome is not Outcome.ALLOWED and not self.reason:
            raise FormatError(f"reason is required when outcome is {outcome.value}", index=index)
        if self.legal is not None and not isinstance(self.legal, Legal):
            raise FormatError("legal must be a Legal or null", index=index)
        set_(self, "details", MappingProxyType(_details(self.details, index)))
        for name in ("prev", "package_prev"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not HEX_HASH_RE.match(value)):
                raise FormatError(f"{name} must be 64 lowercase hex digits or null", index=index)
        if (index == 0) != (self.prev is None):
            raise FormatError("prev must be null exactly for index 0", index=index)
        if self.package is None and self.package_prev is not None:
            raise FormatError("package_prev must be null when package is null", index=index)
        canonical = self._encode()
        set_(self, "_canonical", canonical)
        set_(self, "_leaf_hash", merkle.leaf_hash(canonical))

    def _encode(self) -> bytes:
        obj = self.to_dict()
        try:
            if all(jcs.key_is_fast(key) for key in self.details):
                canonical = jcs.dumps_fast(obj)
            else:
                canonical = jcs.canonicalize(obj)
        except ValueError as exc:
            raise FormatError(str(exc), index=self.index) from None
        if len(canonical) > MAX_ENTRY_BYTES:
            raise FormatError(f"canonical entry exceeds {MAX_ENTRY_BYTES} bytes", index=self.index)
        return canonical

    @classmethod
    def from_dict(cls, data: object) -> Entry:
        """Build an entry from its JSON object form (untrusted).

        Every key must be present and no other key may be.

        Raises:
            FormatError: ``data`` is not a valid entry.
        """
        if not isinstance(data, dict):
            raise FormatError("entry must be a JSON object")
        raw_index = data.get("index")
        index = raw_index if type(raw_index) is int and raw_index >= 0 else None
        version = data.get("v")
        keys = ENTRY_KEYS.get(version) if type(version) is int else None
        if keys is None:
            raise FormatError(f"unsupported entry version {version!r}", index=index)
        if data.keys() != keys:
            missing = sorted(keys - data.keys())
            extra = sorted(data.keys() - keys)
            raise FormatError(
                f"entry keys wrong (missing {missing}, unexpected {extra})", index=index
            )
        token = data.get("token")
        if token is not None and (not isinstance(token, dict) or token.keys() != _TOKEN_KEYS):
            raise FormatError("token must be null or an object with kid, jkt, jti", index=index)
        actor = data["actor"]
        if not isinstance(actor, dict) or actor.keys() != ACTOR_KEYS:
            raise FormatError("actor must be an object with authority, subject, role", index=index)
        legal = data["legal"]
        if legal is not None and (not isinstance(legal, dict) or legal.keys() != LEGAL_KEYS):
            raise FormatError(
                "legal must be null or an object with basis, request_reference", index=index
            )
        try:
            return cls(
                index=data["index"],
                time=data["time"],
                actor=Actor(actor["authority"], actor["subject"], actor["role"]),
                action=data["action"],
                outcome=data["outcome"],
                package=data["package"],
                item=data["item"],
                reason=data["reason"],
                legal=None if legal is None else Legal(legal["basis"], legal["request_reference"]),
                details=data["details"],
                prev=data["prev"],
                package_prev=data["package_prev"],
                token=None if token is None else TokenRef(token["kid"], token["jkt"], token["jti"]),
                v=data["v"],
            )
        except FormatError as exc:
            if exc.index is None and index is not None:
                raise FormatError(exc.reason, index=index) from None
            raise

    @classmethod
    def from_json_bytes(cls, data: bytes) -> Entry:
        """Parse an entry from JSON bytes (untrusted; need not be canonical).

        Raises:
            FormatError: Not strict JSON (UTF-8, no duplicate keys, no floats) or not a valid entry.
        """
        if len(data) > MAX_ENTRY_BYTES * 2:  # escapes may double the size of canonical text
            raise FormatError(f"entry JSON exceeds {MAX_ENTRY_BYTES * 2} bytes")
        try:
            obj = jcs.loads_strict(data)
        except ValueError as exc:
            raise FormatError(str(exc)) from None
        return cls.from_dict(obj)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form (plain ``dict``/``str``/``int``/``bool``/``None``)."""
        actor = self.actor
        legal = self.legal
        obj = {
            "v": self.v,
            "index": self.index,
            "time": self.time,
            "actor": {
                "authority": actor.authority,
                "subject": actor.subject,
                "role": actor.role.value,
            },
            "action": self.action.value,
            "package": self.package,
            "item": self.item,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "legal": None
            if legal is None
            else {"basis": legal.basis, "request_reference": legal.request_reference},
            "details": dict(self.details),
            "prev": self.prev,
            "package_prev": self.package_prev,
        }
        if self.v >= 2:
            token = self.token
            obj["token"] = (
                None if token is None else {"kid": token.kid, "jkt": token.jkt, "jti": token.jti}
            )
        return obj

    def canonical_bytes(self) -> bytes:
        """The RFC 8785 (JCS) UTF-8 bytes of the entry -- what the leaf hash is over."""
        return self._canonical

    def leaf_hash(self) -> bytes:
        """``SHA-256(0x00 || canonical_bytes())`` (RFC 9162 leaf hash), 32 bytes."""
        return self._leaf_hash

    @property
    def timestamp(self) -> datetime:
        """``time`` as an aware UTC datetime."""
        return datetime.fromisoformat(self.time[:-1]).replace(tzinfo=UTC)


def _details(details: object, index: int) -> dict[str, DetailValue]:
    if not isinstance(details, Mapping):
        raise FormatError("details must be an object", index=index)
    copy: dict[str, DetailValue] = {}
    for key, value in details.items():
        if not isinstance(key, str):
            raise FormatError("details keys must be strings", index=index)
        if value is None or isinstance(value, (str, bool)):
            pass
        elif type(value) is int:
            if not -jcs.MAX_SAFE_INTEGER <= value <= jcs.MAX_SAFE_INTEGER:
                raise FormatError(f"details[{key!r}] outside +-(2**53-1)", index=index)
        else:
            raise FormatError(
                f"details[{key!r}] must be a string, integer, boolean or null", index=index
            )
        copy[key] = value
    return copy
