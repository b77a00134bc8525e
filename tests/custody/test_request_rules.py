"""custody.request_rules through custody.rules: the chain the service writes for a request passes;
each broken rule (wrong side, impossible step, step after the end, delivery out of time, a
stranger reading it, another reference) is reported once, at its entry, with its rule id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from custody.entry import Action, Actor, Entry, Legal, Role, format_time
from custody.request_rules import REQUEST_RULES, TRANSITIONS
from custody.rules import check_package_rules

REQUEST = "req_" + "cd" * 16
FR, DE, IT = "FR-OCRTEH", "DE-BKA", "IT-DCSA"
BASE = datetime(2026, 3, 2, 10, tzinfo=UTC)
ZERO = "00" * 32
I, A = Role.INVESTIGATOR, Role.AUDITOR  # noqa: E741 - one-letter roles keep the tables readable
A_ = Action

# (authority, role, action, details) -- the flow, as the service records it.
FLOW: list[tuple[str, Role, Action, dict]] = [
    (FR, I, A_.REQUEST_FILED, {"requesting": FR, "executing": DE, "instrument": "eio",
                               "urgency": "normal", "state": "filed", "attachments": None}),
    (DE, I, A_.REQUEST_ACKNOWLEDGED, {"from": "filed", "to": "acknowledged"}),
    (DE, I, A_.REQUEST_INFO_REQUESTED, {"from": "acknowledged", "to": "info_requested"}),
    (FR, I, A_.REQUEST_INFO_PROVIDED, {"from": "info_requested", "to": "acknowledged"}),
    (FR, A, A_.REQUEST_READ, {}),
    (DE, I, A_.REQUEST_RECOGNISED, {"from": "acknowledged", "to": "recognised"}),
    (DE, I, A_.REQUEST_DELIVERED, {"delivered_package": "pkg_" + "ab" * 16,
                                   "manifest_sha256": "ef" * 32, "state": "recognised"}),
    (DE, I, A_.REQUEST_FULFILLED, {"from": "recognised", "to": "executed"}),
    (DE, A, A_.CUSTODY_READ, {}),
]


def chain(steps: list[tuple[str, Role, Action, dict]], reference: str = "EIO-1") -> list[Entry]:
    return [Entry(index=10 + 2 * n, time=format_time(BASE + timedelta(minutes=n)),
                  actor=Actor(authority, "officer", role), action=action, outcome="allowed",
                  package=REQUEST, item=None, reason=None, legal=Legal("EIO", reference),
                  details=details, prev=ZERO, package_prev=None if n == 0 else ZERO)
            for n, (authority, role, action, details) in enumerate(steps)]


def rules_broken(steps: list[tuple[str, Role, Action, dict]]) -> list[tuple[int, str]]:
    return [(v.index, v.rule) for v in check_package_rules(chain(steps))]


def test_the_flow_passes() -> None:
    assert rules_broken(FLOW) == []


@pytest.mark.parametrize("position,change,rule", [
    (1, lambda s: (FR, I, s[2], s[3]), "request.actor"),          # requesting side acks
    (1, lambda s: (DE, A, s[2], s[3]), "request.actor"),          # an auditor acks
    (5, lambda s: (DE, I, s[2], {"from": "filed", "to": "recognised"}), "request.transition"),
    (3, lambda s: (FR, I, s[2], {"from": "info_requested", "to": "recognised"}),
     "request.transition"),                                       # answer jumps ahead
    (4, lambda s: (IT, A, s[2], s[3]), "request.readers"),        # a stranger reads it
    (6, lambda s: (DE, I, s[2], {**s[3], "state": "filed"}), "request.delivered"),
    (0, lambda s: (DE, I, s[2], s[3]), "request.filed"),          # filed by the wrong party
])
def test_each_broken_rule_is_reported_once(position: int, change, rule: str) -> None:
    steps = list(FLOW)
    steps[position] = change(steps[position])
    broken = rules_broken(steps)
    assert broken == [(10 + 2 * position, rule)]
    assert rule in REQUEST_RULES


def test_nothing_but_reads_after_the_end_and_one_reference() -> None:
    late = (FR, I, A_.REQUEST_WITHDRAWN, {"from": "executed", "to": "withdrawn"})
    assert rules_broken([*FLOW, late]) == [(10 + 2 * len(FLOW), "request.final")]
    entries = chain(FLOW)
    other = entries[5].to_dict()
    other["legal"] = {"basis": "EIO", "request_reference": "SOMETHING-ELSE"}
    entries[5] = Entry.from_dict(other)
    assert [(v.index, v.rule) for v in check_package_rules(entries)] == [
        (20, "request.reference")]
    assert rules_broken([FLOW[0], FLOW[0]]) == [(12, "request.filed")]
    assert rules_broken([FLOW[1]]) == [(10, "request.filed")]


def test_every_transition_of_the_table_is_a_request_action() -> None:
    assert all(action.value.startswith("request.") for action in TRANSITIONS)
