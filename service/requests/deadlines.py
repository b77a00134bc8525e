"""Deadlines of mutual legal assistance requests: one rules table, pure computation.

Nothing here reads a clock, a file or the database: :func:`compute_deadlines` takes a request's
timeline and the rules and returns every deadline; :func:`next_deadline` the earliest open one.
The default table (:data:`DEFAULT_RULES`) names the source of every rule; a deployment replaces or
adds rules with a JSON file (``EVX_DEADLINE_RULES_FILE``, see :func:`rules_from_json`).

Periods are counted as Regulation (EEC, Euratom) No 1182/71, art. 3, does:

* a period in **hours** starts at the beginning of the hour after the event's hour and ends at
  the end of its last hour (filed 10:17 + 8 h -> due 19:00, local time);
* a period in **days** starts at the beginning of the day after the event's day and ends at the
  end (24:00) of its last day, in the executing authority's time zone;
* a period in **months** ends at the end of the day of the last month with the event's date, or
  of that month's last day when it has no such date (31 January + 1 month -> end of 28/29 February).

Periods are calendar periods: deadlines are not moved off weekends or public holidays.
"""

from __future__ import annotations

import calendar
import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo


class Instrument(enum.StrEnum):
    EIO = "eio"                                   # Directive 2014/41/EU
    MLA_TREATY = "mla-treaty"                     # bilateral or multilateral MLA treaty
    BUDAPEST_PRESERVATION = "budapest-art29"      # Budapest Convention art. 29
    BUDAPEST_ACCESS = "budapest-art31"            # Budapest Convention art. 31
    EPOC = "eu-2023-1543-production"              # Regulation (EU) 2023/1543, production order
    EPOC_PR = "eu-2023-1543-preservation"         # Regulation (EU) 2023/1543, preservation order


#: The legal basis a share answering a request records, per instrument.
LEGAL_BASIS: dict[Instrument, str] = {
    Instrument.EIO: "Directive 2014/41/EU (European Investigation Order)",
    Instrument.MLA_TREATY: "Mutual legal assistance treaty",
    Instrument.BUDAPEST_PRESERVATION: "Budapest Convention (ETS 185) art. 29",
    Instrument.BUDAPEST_ACCESS: "Budapest Convention (ETS 185) art. 31",
    Instrument.EPOC: "Regulation (EU) 2023/1543 (European Production Order)",
    Instrument.EPOC_PR: "Regulation (EU) 2023/1543 (European Preservation Order)",
}


class Urgency(enum.StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Milestone(enum.StrEnum):
    """What must happen by the deadline."""

    ACKNOWLEDGE = "acknowledge"   # from filing, until acknowledged (or decided)
    RECOGNISE = "recognise"       # from filing, until recognised or refused
    EXECUTE = "execute"           # from recognition, until executed in full
    COMPLY = "comply"             # from filing, until executed in full (no recognition step)
    PRESERVE = "preserve"         # from filing: preservation lapses unless renewed


class Unit(enum.StrEnum):
    HOURS = "hours"
    DAYS = "days"
    MONTHS = "months"


@dataclass(frozen=True)
class Rule:
    milestone: Milestone
    amount: int
    unit: Unit
    source: str

    def __post_init__(self) -> None:
        if not 0 < self.amount <= 10_000:
            raise ValueError(f"a period must be 1..10000 {self.unit}, not {self.amount}")
        if not self.source.strip():
            raise ValueError("every rule names its source")

    def describe(self) -> str:
        return f"{self.amount} {self.unit}"


RulesTable = Mapping[tuple[Instrument, Urgency], tuple[Rule, ...]]

_EIO_ACK = "Directive 2014/41/EU art. 16(1) and Annex B: acknowledge within one week"
_EIO_REC = "Directive 2014/41/EU art. 12(3): recognition decision within 30 days of receipt"
_EIO_EXE = "Directive 2014/41/EU art. 12(4): measure carried out within 90 days of the decision"
_EIO_URG = ("Directive 2014/41/EU art. 12(2): shorter deadline for urgency (deployment default, "
            "the issuing authority may state another)")
_EIO_EMG = ("Directive 2014/41/EU art. 32(2): provisional measures decided, wherever practicable, "
            "within 24 hours")
_MLA = ("No deadline in the treaty (e.g. 2000 EU MLA Convention art. 4(2): the requesting "
        "state's indicated deadlines); deployment practice")
_BUD29 = "Budapest Convention art. 29(7): preservation for not less than 60 days, renewable"
_BUD29_ACK = "Budapest Convention art. 29(3) and art. 35 (24/7 network): expeditiously; practice"
_BUD31 = ("Budapest Convention art. 31(3): expedited response where data is vulnerable; "
          "deployment practice")
_EPOC = "Regulation (EU) 2023/1543 art. 10(2): data produced within 10 days of receipt"
_EPOC_EMG = "Regulation (EU) 2023/1543 art. 10(4): emergency cases, within 8 hours"
_EPOC_PR = ("Regulation (EU) 2023/1543 art. 11(1): preserved 60 days, extendable by 30 days "
            "when a production request follows")


def _r(milestone: Milestone, amount: int, unit: Unit, source: str) -> Rule:
    return Rule(milestone, amount, unit, source)


M, U = Milestone, Unit
DEFAULT_RULES: dict[tuple[Instrument, Urgency], tuple[Rule, ...]] = {
    (Instrument.EIO, Urgency.NORMAL): (
        _r(M.ACKNOWLEDGE, 7, U.DAYS, _EIO_ACK), _r(M.RECOGNISE, 30, U.DAYS, _EIO_REC),
        _r(M.EXECUTE, 90, U.DAYS, _EIO_EXE)),
    (Instrument.EIO, Urgency.URGENT): (
        _r(M.ACKNOWLEDGE, 2, U.DAYS, _EIO_URG), _r(M.RECOGNISE, 10, U.DAYS, _EIO_URG),
        _r(M.EXECUTE, 30, U.DAYS, _EIO_URG)),
    (Instrument.EIO, Urgency.EMERGENCY): (
        _r(M.ACKNOWLEDGE, 24, U.HOURS, _EIO_EMG), _r(M.RECOGNISE, 24, U.HOURS, _EIO_EMG),
        _r(M.EXECUTE, 7, U.DAYS, _EIO_URG)),
    (Instrument.MLA_TREATY, Urgency.NORMAL): (_r(M.ACKNOWLEDGE, 14, U.DAYS, _MLA),),
    (Instrument.MLA_TREATY, Urgency.URGENT): (_r(M.ACKNOWLEDGE, 3, U.DAYS, _MLA),),
    (Instrument.MLA_TREATY, Urgency.EMERGENCY): (_r(M.ACKNOWLEDGE, 24, U.HOURS, _MLA),),
    (Instrument.BUDAPEST_PRESERVATION, Urgency.NORMAL): (
        _r(M.ACKNOWLEDGE, 1, U.DAYS, _BUD29_ACK), _r(M.PRESERVE, 60, U.DAYS, _BUD29)),
    (Instrument.BUDAPEST_PRESERVATION, Urgency.URGENT): (
        _r(M.ACKNOWLEDGE, 12, U.HOURS, _BUD29_ACK), _r(M.PRESERVE, 60, U.DAYS, _BUD29)),
    (Instrument.BUDAPEST_PRESERVATION, Urgency.EMERGENCY): (
        _r(M.ACKNOWLEDGE, 4, U.HOURS, _BUD29_ACK), _r(M.PRESERVE, 60, U.DAYS, _BUD29)),
    (Instrument.BUDAPEST_ACCESS, Urgency.NORMAL): (
        _r(M.ACKNOWLEDGE, 7, U.DAYS, _BUD31), _r(M.COMPLY, 90, U.DAYS, _BUD31)),
    (Instrument.BUDAPEST_ACCESS, Urgency.URGENT): (
        _r(M.ACKNOWLEDGE, 2, U.DAYS, _BUD31), _r(M.COMPLY, 30, U.DAYS, _BUD31)),
    (Instrument.BUDAPEST_ACCESS, Urgency.EMERGENCY): (
        _r(M.ACKNOWLEDGE, 24, U.HOURS, _BUD31), _r(M.COMPLY, 7, U.DAYS, _BUD31)),
    (Instrument.EPOC, Urgency.NORMAL): (_r(M.COMPLY, 10, U.DAYS, _EPOC),),
    (Instrument.EPOC, Urgency.URGENT): (_r(M.COMPLY, 10, U.DAYS, _EPOC),),
    (Instrument.EPOC, Urgency.EMERGENCY): (_r(M.COMPLY, 8, U.HOURS, _EPOC_EMG),),
    (Instrument.EPOC_PR, Urgency.NORMAL): (_r(M.PRESERVE, 60, U.DAYS, _EPOC_PR),),
    (Instrument.EPOC_PR, Urgency.URGENT): (_r(M.PRESERVE, 60, U.DAYS, _EPOC_PR),),
    (Instrument.EPOC_PR, Urgency.EMERGENCY): (_r(M.PRESERVE, 60, U.DAYS, _EPOC_PR),),
}
del M, U


def rules_from_json(text: str, base: RulesTable = DEFAULT_RULES) -> dict[
        tuple[Instrument, Urgency], tuple[Rule, ...]]:
    """``base`` with the entries of a deployment's rules file replacing whole (instrument,
    urgency) rows. The file is ``{"<instrument>": {"<urgency>": [{"milestone", "amount",
    "unit", "source"}, ...]}}``.

    Raises:
        ValueError: not JSON, an unknown instrument, urgency, milestone or unit, a bad amount or
            a rule without a source.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"deadline rules are not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("deadline rules: an object of instruments")
    table = dict(base)
    for instrument, by_urgency in data.items():
        if not isinstance(by_urgency, dict):
            raise ValueError(f"deadline rules for {instrument!r}: an object of urgencies")
        for urgency, rules in by_urgency.items():
            if not isinstance(rules, list):
                raise ValueError(f"deadline rules for {instrument}/{urgency}: a list")
            try:
                key = (Instrument(instrument), Urgency(urgency))
                table[key] = tuple(Rule(Milestone(r["milestone"]), int(r["amount"]),
                                        Unit(r["unit"]), str(r["source"])) for r in rules)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"deadline rules for {instrument}/{urgency}: {exc}") from None
    return table


# -- period arithmetic ----------------------------------------------------------------------------

def period_end(event: datetime, amount: int, unit: Unit, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a period of ``amount`` ``unit`` counted from ``event`` ends, in ``zone``.

    Raises:
        ValueError: ``event`` is naive (a deadline needs an instant).
    """
    if event.tzinfo is None:
        raise ValueError("the event time needs a time zone")
    local = event.astimezone(zone)
    if unit is Unit.HOURS:
        # Whole hours in UTC: local wall-clock hours repeat or vanish at DST changes.
        start = event.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return start + timedelta(hours=amount + 1)
    if unit is Unit.DAYS:
        last_day = local.date() + timedelta(days=amount)
    else:
        month_index = local.month - 1 + amount
        year, month = local.year + month_index // 12, month_index % 12 + 1
        day = min(local.day, calendar.monthrange(year, month)[1])
        last_day = local.date().replace(year=year, month=month, day=day)
    end_local = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=zone)
    return end_local.astimezone(UTC)


# -- a request's deadlines -------------------------------------------------------------------------

class State(enum.StrEnum):
    FILED = "filed"
    ACKNOWLEDGED = "acknowledged"
    INFO_REQUESTED = "info_requested"
    RECOGNISED = "recognised"
    POSTPONED = "postponed"
    PARTIALLY_EXECUTED = "partially_executed"
    EXECUTED = "executed"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


TERMINAL = frozenset({State.EXECUTED, State.REFUSED, State.WITHDRAWN})


@dataclass(frozen=True)
class Timeline:
    """What the deadline rules need of a request."""

    instrument: Instrument
    urgency: Urgency
    state: State
    filed_at: datetime
    acknowledged_at: datetime | None = None
    recognised_at: datetime | None = None
    decided_at: datetime | None = None     # recognised or refused
    closed_at: datetime | None = None      # executed, refused or withdrawn
    preserved_from: datetime | None = None  # last renewal of a preservation (default: filing)


@dataclass(frozen=True)
class Deadline:
    milestone: Milestone
    due_at: datetime  # UTC
    rule: Rule
    met_at: datetime | None  # when it was met; None while open (or when it lapsed unmet)
    open: bool  # still to be met

    def overdue(self, now: datetime) -> bool:
        return self.open and now >= self.due_at


def _open_and_met(milestone: Milestone, t: Timeline) -> tuple[datetime | None, bool] | None:
    """(start of the period, still open) for ``milestone``; None when it does not apply."""
    closed = t.state in TERMINAL
    if milestone is Milestone.ACKNOWLEDGE:
        return t.filed_at, t.state is State.FILED
    if milestone is Milestone.RECOGNISE:
        return t.filed_at, t.decided_at is None and not closed
    if milestone is Milestone.EXECUTE:
        if t.recognised_at is None:
            return None
        return t.recognised_at, not closed
    if milestone is Milestone.COMPLY:
        return t.filed_at, not closed
    return t.preserved_from or t.filed_at, not closed


def _met_at(milestone: Milestone, t: Timeline) -> datetime | None:
    if milestone is Milestone.ACKNOWLEDGE:
        return t.acknowledged_at or t.decided_at or t.closed_at
    if milestone is Milestone.RECOGNISE:
        return t.decided_at or t.closed_at
    if milestone in (Milestone.EXECUTE, Milestone.COMPLY):
        return t.closed_at if t.state is State.EXECUTED else None
    return None


def compute_deadlines(t: Timeline, rules: RulesTable, zone: ZoneInfo) -> list[Deadline]:
    """Every deadline of the request described by ``t``, in due order.

    Raises:
        KeyError: the table has no row for the request's instrument and urgency.
    """
    result = []
    for rule in rules[(t.instrument, t.urgency)]:
        applies = _open_and_met(rule.milestone, t)
        if applies is None:
            continue
        start, is_open = applies
        if start is None:
            continue
        due = period_end(start, rule.amount, rule.unit, zone)
        result.append(Deadline(rule.milestone, due, rule, None if is_open else
                               _met_at(rule.milestone, t), is_open))
    return sorted(result, key=lambda d: d.due_at)


def next_deadline(deadlines: Iterable[Deadline]) -> Deadline | None:
    """The earliest deadline still open, if any."""
    return min((d for d in deadlines if d.open), key=lambda d: d.due_at, default=None)


def parse_duration(text: str) -> timedelta:
    """``7d``, ``36h``, ``90m`` or an ISO 8601 ``P7D``/``PT36H`` as a duration.

    Raises:
        ValueError: anything else (or a duration over ten years).
    """
    import re

    value = text.strip()
    match = re.fullmatch(r"(\d{1,6})\s*([dhm])", value, re.IGNORECASE) or re.fullmatch(
        r"P(?:(\d{1,6})D)?(?:T(?:(\d{1,6})H)?(?:(\d{1,6})M)?)?", value, re.IGNORECASE)
    if not match or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (use 7d, 36h, 90m or P7D)")
    if len(match.groups()) == 2:
        amount, unit = int(match.group(1)), match.group(2).lower()
        delta = {"d": timedelta(days=amount), "h": timedelta(hours=amount),
                 "m": timedelta(minutes=amount)}[unit]
    else:
        days, hours, minutes = (int(g) if g else 0 for g in match.groups())
        delta = timedelta(days=days, hours=hours, minutes=minutes)
    if delta > timedelta(days=3653):
        raise ValueError("a duration of at most ten years")
    return delta


def rules_document(rules: RulesTable) -> list[dict[str, Any]]:
    """The table as plain data (what ``GET /v1/requests/rules`` serves)."""
    return [{"instrument": i.value, "urgency": u.value,
             "rules": [{"milestone": r.milestone.value, "amount": r.amount, "unit": r.unit.value,
                        "source": r.source} for r in rows]}
            for (i, u), rows in sorted(rules.items())]
