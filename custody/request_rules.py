"""The lifecycle rules of a mutual legal assistance request's chain -- pure, no I/O.

A request's entries carry its id (``req_...``) in the ``package`` field (docs/ledger-format.md
section 1.1). :data:`TRANSITIONS` is the one table of which side may move a request from which
state to which; the service applies it (``service/requests/lifecycle.py``) and
:class:`RequestChecker` checks a chain against it, reporting each offending entry once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from custody.entry import Action, Entry, Outcome, Role

__all__ = [
    "DELIVERABLE",
    "EXECUTING",
    "FINAL",
    "REQUESTING",
    "REQUEST_RULES",
    "TRANSITIONS",
    "RequestChecker",
    "Transition",
]

REQUESTING, EXECUTING = "requesting", "executing"

FINAL = frozenset({"executed", "refused", "withdrawn"})
_OPEN = frozenset({"filed", "acknowledged", "info_requested", "recognised", "postponed",
                   "partially_executed"})
#: States in which the executing side may deliver a package answering the request.
DELIVERABLE = frozenset({"acknowledged", "recognised", "partially_executed"})


@dataclass(frozen=True)
class Transition:
    side: str
    sources: frozenset[str]
    target: str | None  # None: back to the state the last request.info_requested came from


TRANSITIONS: dict[Action, Transition] = {
    Action.REQUEST_ACKNOWLEDGED: Transition(EXECUTING, frozenset({"filed"}), "acknowledged"),
    Action.REQUEST_INFO_REQUESTED: Transition(
        EXECUTING, frozenset({"filed", "acknowledged", "recognised"}), "info_requested"),
    Action.REQUEST_INFO_PROVIDED: Transition(REQUESTING, frozenset({"info_requested"}), None),
    Action.REQUEST_RECOGNISED: Transition(
        EXECUTING, frozenset({"filed", "acknowledged", "postponed"}), "recognised"),
    Action.REQUEST_REFUSED: Transition(EXECUTING, _OPEN - {"partially_executed"}, "refused"),
    Action.REQUEST_POSTPONED: Transition(EXECUTING, frozenset({"acknowledged", "recognised"}),
                                         "postponed"),
    Action.REQUEST_EXECUTED: Transition(
        EXECUTING, frozenset({"recognised", "partially_executed"}), "partially_executed"),
    Action.REQUEST_FULFILLED: Transition(
        EXECUTING, frozenset({"recognised", "partially_executed"}), "executed"),
    Action.REQUEST_WITHDRAWN: Transition(REQUESTING, _OPEN, "withdrawn"),
}

REQUEST_RULES: dict[str, str] = {
    "request.filed": "a request's first entry, and only it, is an allowed request.filed by an "
                     "investigator of the requesting authority it names",
    "request.transition": "each step goes from the request's current state to the state the "
                          "transition table gives",
    "request.actor": "each step is made by an investigator of the side the table names",
    "request.final": "nothing but reads follows a final state (executed, refused, withdrawn)",
    "request.reference": "every allowed entry carries the request's legal reference",
    "request.delivered": "a package answers a request only while it is acknowledged, "
                         "recognised or partially executed, by the executing side",
    "request.readers": "only the request's two authorities read it",
}

_READS = frozenset({Action.REQUEST_READ, Action.CUSTODY_READ})

Report = Callable[[Entry, str, str], None]


class RequestChecker:
    """The state of one request's chain walked in log order."""

    def __init__(self, first: Entry, report: Report) -> None:
        self._report = report
        details = first.details
        self.ok = (first.action is Action.REQUEST_FILED and first.outcome is Outcome.ALLOWED
                   and isinstance(details.get("requesting"), str)
                   and isinstance(details.get("executing"), str))
        self.requesting = str(details.get("requesting", first.actor.authority))
        self.executing = str(details.get("executing", ""))
        self.reference = first.legal.request_reference if first.legal else None
        self.state = "filed"
        self.resume = "acknowledged"

    def visit(self, entry: Entry, first: bool) -> None:
        actor = entry.actor
        if first:
            if not self.ok:
                self._report(entry, "request.filed", f"the request's first entry is "
                             f"{entry.action.value} {entry.outcome.value} with its parties")
            elif actor.authority != self.requesting or actor.role is not Role.INVESTIGATOR:
                self._report(entry, "request.filed", f"filed by {actor.authority}/"
                             f"{actor.role.value}, not an investigator of {self.requesting}")
            return
        if entry.outcome is not Outcome.ALLOWED:
            return
        if actor.authority not in (self.requesting, self.executing):
            self._report(entry, "request.readers",
                         f"{entry.action.value} by {actor.authority}, not a party")
            return
        if entry.action in _READS:
            return
        if entry.legal is None or entry.legal.request_reference != self.reference:
            self._report(entry, "request.reference",
                         f"{entry.action.value} without the request's reference {self.reference}")
        if entry.action is Action.REQUEST_FILED:
            self._report(entry, "request.filed", "the request is filed a second time")
            return
        if self.state in FINAL:
            self._report(entry, "request.final",
                         f"{entry.action.value} after the request was {self.state}")
            return
        if entry.action is Action.REQUEST_DELIVERED:
            self._side(entry, EXECUTING)
            if self.state not in DELIVERABLE or entry.details.get("state") != self.state \
                    or not isinstance(entry.details.get("delivered_package"), str):
                self._report(entry, "request.delivered",
                             f"a package delivered while the request is {self.state}")
            return
        transition = TRANSITIONS.get(entry.action)
        if transition is None:
            self._report(entry, "request.transition", f"{entry.action.value} is not a step of "
                                                      "a request")
            return
        self._side(entry, transition.side)
        target = transition.target or self.resume
        if self.state not in transition.sources or entry.details.get("from") != self.state \
                or entry.details.get("to") != target:
            self._report(entry, "request.transition",
                         f"{entry.action.value} from {entry.details.get('from')} to "
                         f"{entry.details.get('to')}, but the request was {self.state} "
                         f"(allowed to {target})")
        if entry.action is Action.REQUEST_INFO_REQUESTED:
            self.resume = self.state
        self.state = target

    def _side(self, entry: Entry, side: str) -> None:
        want = self.executing if side == EXECUTING else self.requesting
        if entry.actor.authority != want or entry.actor.role is not Role.INVESTIGATOR:
            self._report(entry, "request.actor",
                         f"{entry.action.value} by {entry.actor.authority}/"
                         f"{entry.actor.role.value}, not an investigator of {want}")
