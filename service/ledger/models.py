"""Values the ledger storage takes and returns. The entry itself is :class:`custody.entry.Entry`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from custody.entry import Action, Actor, DetailValue, Entry, Legal, Outcome, TokenRef
from custody.errors import FormatError
from service.ledger.errors import InvalidEvent

#: Worst-case stand-ins used to validate an event before it is sequenced: the largest index and
#: non-null links make the canonical form as long as it can get, so an event that validates
#: here cannot fail validation (e.g. the entry size bound) once it is given its real position.
_PROBE_INDEX = 2**53 - 1
_PROBE_HASH = "0" * 64
_PROBE_TIME = "2000-01-01T00:00:00.000000Z"


@dataclass(frozen=True, slots=True)
class Event:
    """Everything an entry says except where and when it sits in the log.

    The ledger assigns ``index``, ``time``, ``prev`` and ``package_prev`` when it appends.
    """

    actor: Actor
    action: Action | str
    outcome: Outcome | str
    package: str | None = None
    item: str | None = None
    reason: str | None = None
    legal: Legal | None = None
    details: Mapping[str, DetailValue] = field(default_factory=dict)
    #: The officer's token (issuer key and token id); ``None`` for system actors.
    token: TokenRef | None = None

    def validate(self) -> None:
        """Check the event makes a valid entry wherever it lands. Raises :class:`InvalidEvent`."""
        try:
            self.to_entry(index=_PROBE_INDEX, time=_PROBE_TIME, prev=_PROBE_HASH,
                          package_prev=_PROBE_HASH if self.package is not None else None)
        except (FormatError, TypeError, ValueError) as exc:
            raise InvalidEvent(f"event rejected: {exc}") from exc

    def to_entry(self, *, index: int, time: str, prev: str | None,
                 package_prev: str | None) -> Entry:
        """The entry this event becomes at ``index``. Raises :class:`custody.errors.FormatError`."""
        # Entry converts (and checks) an action or outcome given as a string.
        return Entry(index=index, time=time, actor=self.actor,
                     action=self.action,  # type: ignore[arg-type]
                     outcome=self.outcome,  # type: ignore[arg-type]
                     package=self.package, item=self.item,
                     reason=self.reason, legal=self.legal, details=self.details, prev=prev,
                     package_prev=package_prev, token=self.token)


@dataclass(frozen=True, slots=True)
class AppendedEntry:
    """An entry durably recorded: its position, its RFC 9162 leaf hash, the entry itself."""

    index: int
    leaf_hash: bytes
    entry: Entry


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry read back from the database, with the canonical bytes exactly as stored."""

    index: int
    leaf_hash: bytes
    canonical: bytes
    entry: Entry


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as stored: tree size, root, the signed note verbatim, when signed."""

    tree_size: int
    root: bytes
    note: str
    created_at: datetime
