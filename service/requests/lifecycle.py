"""The life of a request, as the service applies it: which transition (by its API name) records
which ledger action. Which side may take it, from which states, to which state, is the one table
in ``custody/request_rules.py`` (docs/ledger-format.md section 1.1), which verifiers check.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from custody import request_rules
from custody.entry import Action
from service.requests.deadlines import State


class Side(enum.StrEnum):
    REQUESTING = request_rules.REQUESTING
    EXECUTING = request_rules.EXECUTING


@dataclass(frozen=True)
class Transition:
    action: str          # the ledger action recorded
    side: Side           # whose investigators may do it
    sources: frozenset[State]
    target: State | None  # None: back to the state before the information was asked for
    needs_note: bool     # grounds, questions or answers are required


def _from_table(action: Action, needs_note: bool) -> Transition:
    rule = request_rules.TRANSITIONS[action]
    return Transition(action.value, Side(rule.side), frozenset(State(s) for s in rule.sources),
                      State(rule.target) if rule.target else None, needs_note)


TRANSITIONS: dict[str, Transition] = {
    "acknowledge": _from_table(Action.REQUEST_ACKNOWLEDGED, False),
    "ask": _from_table(Action.REQUEST_INFO_REQUESTED, True),
    "answer": _from_table(Action.REQUEST_INFO_PROVIDED, True),
    "recognise": _from_table(Action.REQUEST_RECOGNISED, False),
    "refuse": _from_table(Action.REQUEST_REFUSED, True),
    "postpone": _from_table(Action.REQUEST_POSTPONED, True),
    "execute-partly": _from_table(Action.REQUEST_EXECUTED, False),
    "fulfil": _from_table(Action.REQUEST_FULFILLED, False),
    "withdraw": _from_table(Action.REQUEST_WITHDRAWN, False),
}

#: States in which the executing side may deliver (share a package answering the request).
DELIVERABLE = frozenset(State(s) for s in request_rules.DELIVERABLE)


class TransitionRefused(Exception):
    """Not possible from the current state (the state is in the message)."""


def target_state(transition: Transition, current: State, resume: State | None) -> State:
    """The state after ``transition`` from ``current``.

    Raises:
        TransitionRefused: ``current`` is not one of the transition's sources.
    """
    if current not in transition.sources:
        allowed = ", ".join(sorted(s.value for s in transition.sources))
        raise TransitionRefused(f"the request is {current.value}; this is possible only when it "
                                f"is {allowed}")
    if transition.target is None:
        return resume or State.ACKNOWLEDGED
    return transition.target
