"""Deadline computation (service/requests/deadlines.py): pure functions at their boundaries --
time zones and DST, end of month, emergencies in hours, which deadline is next in each state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.requests.deadlines import (
    DEFAULT_RULES,
    Instrument,
    Milestone,
    State,
    Timeline,
    Unit,
    Urgency,
    compute_deadlines,
    next_deadline,
    parse_duration,
    period_end,
    rules_from_json,
)

UTC = UTC
BERLIN, PARIS, LISBON = ZoneInfo("Europe/Berlin"), ZoneInfo("Europe/Paris"), ZoneInfo(
    "Europe/Lisbon")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_days_end_at_midnight_local_the_event_day_not_counted() -> None:
    # Filed 10:00 UTC on 2 March (11:00 Berlin): 7 days -> ends 24:00 on 9 March, Berlin time.
    assert period_end(utc(2026, 3, 2, 10), 7, Unit.DAYS, BERLIN) == utc(2026, 3, 9, 23)
    # Lisbon is UTC+0 in winter: the same period ends an hour later in UTC.
    assert period_end(utc(2026, 3, 2, 10), 7, Unit.DAYS, LISBON) == utc(2026, 3, 10, 0)


def test_the_local_date_decides_not_the_utc_date() -> None:
    # 23:30 UTC on 31 Jan is already 1 Feb in Berlin: the period counts from 1 Feb.
    assert period_end(utc(2026, 1, 31, 23, 30), 1, Unit.DAYS, BERLIN) == utc(2026, 2, 2, 23)
    # ... and still 31 Jan in New York (18:30): ends 24:00 on 1 Feb New York = 05:00 UTC 2 Feb.
    assert period_end(utc(2026, 1, 31, 23, 30), 1, Unit.DAYS, NEW_YORK) == utc(2026, 2, 2, 5)


def test_days_across_a_dst_change_end_at_local_midnight() -> None:
    # Berlin moves to summer time on 29 March 2026: the end is 22:00 UTC, not 23:00.
    assert period_end(utc(2026, 3, 25, 12), 7, Unit.DAYS, BERLIN) == utc(2026, 4, 1, 22)
    assert period_end(utc(2026, 10, 20, 12), 7, Unit.DAYS, PARIS) == utc(2026, 10, 27, 23)


def test_end_of_month_days_and_months() -> None:
    assert period_end(utc(2026, 1, 30, 12), 30, Unit.DAYS, LISBON) == utc(2026, 3, 2, 0)
    # A month from 31 January ends with February's last day (28 in 2026, 29 in 2028).
    assert period_end(utc(2026, 1, 31, 12), 1, Unit.MONTHS, LISBON) == utc(2026, 3, 1, 0)
    assert period_end(utc(2028, 1, 31, 12), 1, Unit.MONTHS, LISBON) == utc(2028, 3, 1, 0)
    assert period_end(utc(2026, 12, 31, 12), 2, Unit.MONTHS, LISBON) == utc(2027, 3, 1, 0)
    # Year end with days.
    assert period_end(utc(2026, 12, 25, 9), 7, Unit.DAYS, LISBON) == utc(2027, 1, 2, 0)


def test_emergencies_in_hours_the_event_hour_not_counted() -> None:
    # Regulation 2023/1543 art. 10(4): 8 hours. Received 10:17 -> due 19:00 (zone-independent).
    assert period_end(utc(2026, 5, 4, 10, 17), 8, Unit.HOURS, BERLIN) == utc(2026, 5, 4, 19)
    assert period_end(utc(2026, 5, 4, 10, 0), 8, Unit.HOURS, NEW_YORK) == utc(2026, 5, 4, 19)
    # Across midnight and across a DST change: elapsed hours, not wall-clock hours.
    assert period_end(utc(2026, 3, 28, 22, 59), 8, Unit.HOURS, BERLIN) == utc(2026, 3, 29, 7)
    assert period_end(utc(2026, 5, 4, 23, 30), 24, Unit.HOURS, BERLIN) == utc(2026, 5, 6, 0)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        period_end(datetime(2026, 1, 1), 1, Unit.DAYS, BERLIN)


def _eio(state: State, **times: datetime) -> Timeline:
    return Timeline(Instrument.EIO, Urgency.NORMAL, state, filed_at=utc(2026, 3, 2, 10), **times)


def test_eio_deadlines_follow_the_state() -> None:
    filed = compute_deadlines(_eio(State.FILED), DEFAULT_RULES, BERLIN)
    assert [(d.milestone, d.due_at, d.open) for d in filed] == [
        (Milestone.ACKNOWLEDGE, utc(2026, 3, 9, 23), True),
        (Milestone.RECOGNISE, utc(2026, 4, 1, 22), True)]  # 30 days, summer time by then
    assert next_deadline(filed).milestone is Milestone.ACKNOWLEDGE  # type: ignore[union-attr]

    acked = compute_deadlines(_eio(State.ACKNOWLEDGED, acknowledged_at=utc(2026, 3, 3, 8)),
                              DEFAULT_RULES, BERLIN)
    ack = next(d for d in acked if d.milestone is Milestone.ACKNOWLEDGE)
    assert not ack.open and ack.met_at == utc(2026, 3, 3, 8)
    assert next_deadline(acked).milestone is Milestone.RECOGNISE  # type: ignore[union-attr]

    rec = utc(2026, 3, 20, 16)
    recognised = compute_deadlines(_eio(State.RECOGNISED, acknowledged_at=utc(2026, 3, 3),
                                        recognised_at=rec, decided_at=rec), DEFAULT_RULES, BERLIN)
    upcoming = next_deadline(recognised)
    assert upcoming is not None and upcoming.milestone is Milestone.EXECUTE
    assert upcoming.due_at == utc(2026, 6, 18, 22)  # 90 days after 20 March, 24:00 CEST

    done = compute_deadlines(_eio(State.EXECUTED, acknowledged_at=utc(2026, 3, 3),
                                  recognised_at=rec, decided_at=rec,
                                  closed_at=utc(2026, 4, 1)), DEFAULT_RULES, BERLIN)
    assert next_deadline(done) is None
    assert next(d for d in done if d.milestone is Milestone.EXECUTE).met_at == utc(2026, 4, 1)


def test_an_overdue_deadline_stays_next_until_met() -> None:
    deadlines = compute_deadlines(_eio(State.FILED), DEFAULT_RULES, BERLIN)
    ack = next_deadline(deadlines)
    assert ack is not None
    assert not ack.overdue(utc(2026, 3, 9, 22, 59, 59))
    assert ack.overdue(utc(2026, 3, 9, 23))


def test_production_order_emergency_is_eight_hours() -> None:
    t = Timeline(Instrument.EPOC, Urgency.EMERGENCY, State.FILED, filed_at=utc(2026, 5, 4, 10, 17))
    (comply,) = compute_deadlines(t, DEFAULT_RULES, BERLIN)
    assert comply.milestone is Milestone.COMPLY and comply.due_at == utc(2026, 5, 4, 19)
    normal = Timeline(Instrument.EPOC, Urgency.NORMAL, State.FILED,
                      filed_at=utc(2026, 5, 4, 10, 17))
    assert compute_deadlines(normal, DEFAULT_RULES, BERLIN)[0].due_at == utc(2026, 5, 14, 22)


def test_preservation_lasts_sixty_days_and_every_rule_has_a_source() -> None:
    t = Timeline(Instrument.BUDAPEST_PRESERVATION, Urgency.NORMAL, State.ACKNOWLEDGED,
                 filed_at=utc(2026, 1, 1, 12), acknowledged_at=utc(2026, 1, 1, 13))
    (preserve,) = [d for d in compute_deadlines(t, DEFAULT_RULES, LISBON) if d.open]
    assert preserve.milestone is Milestone.PRESERVE and preserve.due_at == utc(2026, 3, 3, 0)
    for instrument in Instrument:
        for urgency in Urgency:
            assert all(r.source for r in DEFAULT_RULES[(instrument, urgency)])


def test_deployment_rules_replace_rows() -> None:
    table = rules_from_json('{"eio": {"urgent": [{"milestone": "acknowledge", "amount": 36, '
                            '"unit": "hours", "source": "national guideline 2026/4"}]}}')
    assert [(r.milestone, r.amount, r.unit) for r in table[(Instrument.EIO, Urgency.URGENT)]] \
        == [(Milestone.ACKNOWLEDGE, 36, Unit.HOURS)]
    assert table[(Instrument.EIO, Urgency.NORMAL)] == DEFAULT_RULES[(Instrument.EIO,
                                                                      Urgency.NORMAL)]
    for bad in ('{"eio": {"urgent": [{"milestone": "acknowledge", "amount": 0, "unit": "days", '
                '"source": "x"}]}}',
                '{"eio": {"urgent": [{"milestone": "acknowledge", "amount": 3, "unit": "weeks", '
                '"source": "x"}]}}',
                '{"eio": {"urgent": [{"milestone": "acknowledge", "amount": 3, "unit": "days", '
                '"source": " "}]}}',
                '{"nope": {"urgent": []}}', "[1]", "{"):
        with pytest.raises(ValueError):
            rules_from_json(bad)


@pytest.mark.parametrize("text,expected", [
    ("7d", timedelta(days=7)), ("36h", timedelta(hours=36)), ("90m", timedelta(minutes=90)),
    ("P7D", timedelta(days=7)), ("PT8H", timedelta(hours=8)), ("P1DT2H", timedelta(days=1,
                                                                                   hours=2))])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "P", "PT", "7w", "99999999d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
