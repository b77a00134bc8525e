"""The life of a request: which side may do what, from which state, to which state. Pure.

The same table is specified in docs/ledger-format.md (section "Request entries"), so a verifier can
check a request's chain of entries without this code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from service.requests.deadlines import State


class Side(enum.StrEnum):
    REQUESTING = "requesting"
    EXECUTING = "executing"


@dataclass(frozen=True)
class Transition:
    action: str          # the ledger action recorded
    side: Side           # whose investigators may do it
    sources: frozenset[State]
    target: State | None  # None: back to the state before the information was asked for
    needs_note: bool     # grounds, questions or answers are required


_OPEN = frozenset({State.FILED, State.ACKNOWLEDGED, State.INFO_REQUESTED, State.RECOGNISED,
                   State.POSTPONED, State.PARTIALLY_EXECUTED})
S = State

TRANSITIONS: dict[str, Transition] = {
    "acknowledge": Transition("request.acknowledged", Side.EXECUTING,
                              frozenset({S.FILED}), S.ACKNOWLEDGED, False),
    "ask": Transition("request.info_requested", Side.EXECUTING,
                      frozenset({S.FILED, S.ACKNOWLEDGED, S.RECOGNISED}), S.INFO_REQUESTED, True),
    "answer": Transition("request.info_provided", Side.REQUESTING,
                         frozenset({S.INFO_REQUESTED}), None, True),
    "recognise": Transition("request.recognised", Side.EXECUTING,
                            frozenset({S.FILED, S.ACKNOWLEDGED, S.POSTPONED}), S.RECOGNISED,
                            False),
    "refuse": Transition("request.refused", Side.EXECUTING,
                         _OPEN - {S.PARTIALLY_EXECUTED}, S.REFUSED, True),
    "postpone": Transition("request.postponed", Side.EXECUTING,
                           frozenset({S.ACKNOWLEDGED, S.RECOGNISED}), S.POSTPONED, True),
    "execute-partly": Transition("request.executed", Side.EXECUTING,
                                 frozenset({S.RECOGNISED, S.PARTIALLY_EXECUTED}),
                                 S.PARTIALLY_EXECUTED, False),
    "fulfil": Transition("request.fulfilled", Side.EXECUTING,
                         frozenset({S.RECOGNISED, S.PARTIALLY_EXECUTED}), S.EXECUTED, False),
    "withdraw": Transition("request.withdrawn", Side.REQUESTING, _OPEN, S.WITHDRAWN, False),
}

#: States in which the executing side may deliver (share a package answering the request).
DELIVERABLE = frozenset({S.ACKNOWLEDGED, S.RECOGNISED, S.PARTIALLY_EXECUTED})
del S


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
