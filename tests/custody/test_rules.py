"""custody.rules: generated valid histories pass; each rule broken alone is reported once, at its
index."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from custody.entry import Action, Actor, Entry, Legal, Outcome, Role, format_time
from custody.rules import (
    RULES,
    RulesViolated,
    check_package_rules,
    manifest_sha256,
    require_package_rules,
)

PACKAGE = "pkg_" + "ab" * 16
OWNER = "DE-BKA"
PARTNERS = ("FR-OCRTEH", "NL-POLITIE")
STRANGER = "IT-POLIZIA"
BASE = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ZERO = "00" * 32


@dataclass
class Spec:
    """One entry before it gets its index: what the generator and the mutations work on."""

    t: int
    authority: str
    role: Role
    action: Action
    outcome: Outcome = Outcome.ALLOWED
    item: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    subject: str = "officer"


def materialize(specs: list[Spec]) -> list[Entry]:
    entries = []
    for position, spec in enumerate(specs):
        index = 7 + 3 * position  # a package's entries are spread through the log
        entries.append(Entry(
            index=index, time=format_time(BASE + timedelta(seconds=spec.t)),
            actor=Actor(spec.authority, spec.subject, spec.role), action=spec.action,
            outcome=spec.outcome, package=PACKAGE, item=spec.item,
            reason=None if spec.outcome is Outcome.ALLOWED else "refused",
            legal=Legal("EIO", "REQ-1") if spec.action is Action.SHARE_CREATED else None,
            details=spec.details, prev=ZERO, package_prev=None if position == 0 else ZERO))
    return entries


def index_of(position: int) -> int:
    return 7 + 3 * position


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class History:
    specs: list[Spec]
    uploads: dict[str, tuple[int, str]]  # name -> (size, sha256)
    seal_at: int | None  # position of the seal
    revoked: list[tuple[int, str]]  # (position of share.revoked, authority)


@st.composite
def valid_histories(draw: st.DrawFn) -> History:
    clock = 0
    specs: list[Spec] = []

    def add(spec: Spec) -> None:
        specs.append(spec)

    def tick() -> int:
        nonlocal clock
        clock += draw(st.integers(1, 5))
        return clock

    add(Spec(0, OWNER, Role.INVESTIGATOR, Action.PACKAGE_CREATED, details={"case_reference": "C"}))
    names = draw(st.lists(st.text("abcé/._-", min_size=1, max_size=6), min_size=1, max_size=4,
                          unique=True))
    uploads: dict[str, tuple[int, str]] = {}

    def noise() -> None:
        for _ in range(draw(st.integers(0, 2))):
            add(Spec(tick(), draw(st.sampled_from((OWNER, STRANGER, *PARTNERS))),
                     draw(st.sampled_from(list(Role))), draw(st.sampled_from(list(Action))),
                     outcome=draw(st.sampled_from((Outcome.DENIED, Outcome.FAILED))),
                     item=draw(st.none() | st.sampled_from(names))))

    for name in names:
        noise()
        size, sha = draw(st.integers(0, 10**9)), digest(name)
        uploads[name] = (size, sha)
        add(Spec(tick(), OWNER, Role.INVESTIGATOR, Action.ITEM_UPLOADED, item=name,
                 details={"size": size, "sha256": sha}))
        if draw(st.booleans()):
            add(Spec(tick(), OWNER, Role.INVESTIGATOR, Action.DOWNLOAD_STARTED, item=name,
                     details={"offset": 0, "length": size, "sha256": sha}))
    seal_at = None
    revoked: list[tuple[int, str]] = []
    if draw(st.booleans()):
        seal_at = len(specs)
        add(Spec(tick(), OWNER, Role.INVESTIGATOR, Action.PACKAGE_SEALED,
                 details={"manifest_sha256": manifest_sha256(
                     PACKAGE, ((n, s, h) for n, (s, h) in uploads.items())),
                          "items": len(uploads), "bytes": sum(s for s, _ in uploads.values())}))
        shares: dict[str, int | None] = {}  # authority -> expiry (seconds) while live
        for _ in range(draw(st.integers(0, 12))):
            noise()
            move = draw(st.sampled_from(("share", "revoke", "download", "read", "audit")))
            now = tick()
            live = [a for a, end in shares.items() if end is None or now < end]
            if move == "share":
                partner = draw(st.sampled_from(PARTNERS))
                end = draw(st.none() | st.integers(now + 1, now + 40))
                shares[partner] = end
                add(Spec(now, OWNER, Role.INVESTIGATOR, Action.SHARE_CREATED, details={
                    "authority": partner,
                    "expires_at": None if end is None else
                    (BASE + timedelta(seconds=end)).isoformat()}))
            elif move == "revoke" and shares:
                partner = draw(st.sampled_from(sorted(shares)))
                del shares[partner]
                revoked.append((len(specs), partner))
                add(Spec(now, OWNER, Role.INVESTIGATOR, Action.SHARE_REVOKED,
                         details={"authority": partner}))
            elif move == "download" and (live or draw(st.booleans())):
                who = draw(st.sampled_from([OWNER, *live]))
                name = draw(st.sampled_from(names))
                size, sha = uploads[name]
                add(Spec(now, who, Role.INVESTIGATOR, Action.DOWNLOAD_STARTED, item=name,
                         details={"offset": 0, "length": size, "sha256": sha}, subject="dl"))
                if draw(st.booleans()):
                    add(Spec(tick(), who, Role.INVESTIGATOR, Action.DOWNLOAD_COMPLETED, item=name,
                             details={"bytes_sent": size}, subject="dl"))
            elif move == "read":
                who = draw(st.sampled_from([OWNER, *live]))
                add(Spec(now, who, Role.INVESTIGATOR,
                         draw(st.sampled_from((Action.PACKAGE_READ, Action.CUSTODY_READ)))))
            else:  # auditors read the record whatever the state of the shares
                add(Spec(now, draw(st.sampled_from((OWNER, STRANGER, *PARTNERS))), Role.AUDITOR,
                         Action.CUSTODY_READ))
    else:
        noise()
    return History(specs, uploads, seal_at, revoked)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_histories())
def test_generated_valid_histories_pass(history: History) -> None:
    entries = materialize(history.specs)
    assert check_package_rules(entries) == []
    require_package_rules(entries)  # does not raise


# -- one rule broken at a time: each mutation returns (specs, position of the offender) -----------

Mutation = Callable[[History, st.DataObject], "tuple[list[Spec], int] | None"]


def _insert(history: History, position: int, spec: Spec) -> tuple[list[Spec], int]:
    specs = list(history.specs)
    spec.t = specs[position - 1].t
    specs.insert(position, spec)
    return specs, position


def _after_seal(history: History, data: st.DataObject) -> int | None:
    if history.seal_at is None:
        return None
    return data.draw(st.integers(history.seal_at + 1, len(history.specs)))


def _after_upload(history: History, data: st.DataObject) -> tuple[int, str]:
    name = data.draw(st.sampled_from(sorted(history.uploads)))
    uploaded = next(
        i
        for i, s in enumerate(history.specs)
        if s.action is Action.ITEM_UPLOADED and s.item == name and s.outcome is Outcome.ALLOWED
    )
    return data.draw(st.integers(uploaded + 1, len(history.specs))), name


def created_again(history: History, data: st.DataObject) -> tuple[list[Spec], int]:
    position = data.draw(st.integers(1, len(history.specs)))
    return _insert(history, position, Spec(0, OWNER, Role.INVESTIGATOR, Action.PACKAGE_CREATED))


def first_not_created(history: History, data: st.DataObject) -> tuple[list[Spec], int]:
    specs = list(history.specs)
    specs[0] = replace(specs[0], action=Action.PACKAGE_READ)
    return specs, 0


def sealed_twice(history: History, data: st.DataObject) -> tuple[list[Spec], int] | None:
    position = _after_seal(history, data)
    if position is None:
        return None
    return _insert(history, position, Spec(0, OWNER, Role.INVESTIGATOR, Action.PACKAGE_SEALED,
                                           details={"manifest_sha256": ZERO}))


def upload_after_seal(history: History, data: st.DataObject) -> tuple[list[Spec], int] | None:
    position = _after_seal(history, data)
    if position is None:
        return None
    return _insert(
        history,
        position,
        Spec(
            0,
            OWNER,
            Role.INVESTIGATOR,
            Action.ITEM_UPLOADED,
            item="late.bin",
            details={"size": 3, "sha256": digest("x")},
        ),
    )


def uploaded_twice(history: History, data: st.DataObject) -> tuple[list[Spec], int] | None:
    position, name = _after_upload(history, data)
    if history.seal_at is not None and position > history.seal_at:
        return None  # that would also be an upload after the seal
    return _insert(
        history,
        position,
        Spec(
            0,
            OWNER,
            Role.INVESTIGATOR,
            Action.ITEM_UPLOADED,
            item=name,
            details={"size": 1, "sha256": digest("other")},
        ),
    )


def shared_before_seal(history: History, data: st.DataObject) -> tuple[list[Spec], int]:
    end = len(history.specs) if history.seal_at is None else history.seal_at
    position = data.draw(st.integers(1, end))
    return _insert(history, position, Spec(0, OWNER, Role.INVESTIGATOR, Action.SHARE_CREATED,
                                           details={"authority": STRANGER, "expires_at": None}))


def revoked_unshared(history: History, data: st.DataObject) -> tuple[list[Spec], int]:
    position = data.draw(st.integers(1, len(history.specs)))
    return _insert(history, position, Spec(0, OWNER, Role.INVESTIGATOR, Action.SHARE_REVOKED,
                                           details={"authority": STRANGER}))


def not_the_owner(history: History, data: st.DataObject) -> tuple[list[Spec], int]:
    candidates = [
        i
        for i, s in enumerate(history.specs)
        if s.outcome is Outcome.ALLOWED
        and s.action
        in (Action.ITEM_UPLOADED, Action.PACKAGE_SEALED, Action.SHARE_CREATED, Action.SHARE_REVOKED)
    ]
    position = data.draw(st.sampled_from(candidates))
    specs = list(history.specs)
    actor = data.draw(
        st.sampled_from(
            ((STRANGER, Role.INVESTIGATOR), (PARTNERS[0], Role.INVESTIGATOR), (OWNER, Role.AUDITOR))
        )
    )
    specs[position] = replace(specs[position], authority=actor[0], role=actor[1])
    return specs, position


def seal_without_manifest(history: History, data: st.DataObject) -> tuple[list[Spec], int] | None:
    if history.seal_at is None:
        return None
    specs = list(history.specs)
    seal = specs[history.seal_at]
    specs[history.seal_at] = replace(seal, details={k: v for k, v in seal.details.items()
                                                    if k != "manifest_sha256"})
    return specs, history.seal_at


def seal_wrong_manifest(history: History, data: st.DataObject) -> tuple[list[Spec], int] | None:
    if history.seal_at is None:
        return None
    specs = list(history.specs)
    seal = specs[history.seal_at]
    specs[history.seal_at] = replace(
        seal, details={**seal.details, "manifest_sha256": digest("forged")}
    )
    return specs, history.seal_at


def read_without_share(history: History, data: st.DataObject) -> tuple[list[Spec], int] | None:
    position, name = _after_upload(history, data)
    size, sha = history.uploads[name]
    options: list[tuple[str, int]] = [(STRANGER, position)]
    options += [(who, p + 1) for p, who in history.revoked
                if not any(s.action is Action.SHARE_CREATED and s.details.get("authority") == who
                           for s in history.specs[p:])]
    who, earliest = data.draw(st.sampled_from(options))
    position = data.draw(st.integers(min(earliest, len(history.specs)), len(history.specs)))
    if data.draw(st.booleans()):
        spec = Spec(0, who, Role.INVESTIGATOR, Action.DOWNLOAD_STARTED, item=name,
                    details={"offset": 0, "length": size, "sha256": sha})
    else:
        spec = Spec(0, who, Role.INVESTIGATOR, Action.PACKAGE_READ)
    return _insert(history, position, spec)


def read_after_expiry(history: History, data: st.DataObject) -> tuple[list[Spec], int] | None:
    specs = list(history.specs)
    last_shares = {s.details["authority"]: s for s in specs
                   if s.action is Action.SHARE_CREATED and s.outcome is Outcome.ALLOWED}
    ended = [s for s in last_shares.values() if s.details["expires_at"] is not None]
    if not ended:
        return None
    share = data.draw(st.sampled_from(ended))
    end = datetime.fromisoformat(share.details["expires_at"])
    after = int((end - BASE).total_seconds()) + data.draw(st.integers(0, 3))
    specs.append(Spec(max(after, specs[-1].t), share.details["authority"], Role.INVESTIGATOR,
                      data.draw(st.sampled_from((Action.PACKAGE_READ, Action.DOWNLOAD_STARTED))),
                      item=next(iter(history.uploads)),
                      details={"sha256": history.uploads[next(iter(history.uploads))][1]}))
    return specs, len(specs) - 1


def auditor_downloads(history: History, data: st.DataObject) -> tuple[list[Spec], int]:
    position, name = _after_upload(history, data)
    size, sha = history.uploads[name]
    return _insert(
        history,
        position,
        Spec(
            0,
            OWNER,
            Role.AUDITOR,
            Action.DOWNLOAD_STARTED,
            item=name,
            details={"offset": 0, "length": size, "sha256": sha},
        ),
    )


def other_bytes_served(history: History, data: st.DataObject) -> tuple[list[Spec], int]:
    position, name = _after_upload(history, data)
    size, _ = history.uploads[name]
    forged = data.draw(st.sampled_from((digest("forged"), None)))
    return _insert(history, position, Spec(0, OWNER, Role.INVESTIGATOR, Action.DOWNLOAD_STARTED,
                                           item=name, details={"offset": 0, "length": size,
                                                               "sha256": forged}))


def completed_unstarted(history: History, data: st.DataObject) -> tuple[list[Spec], int]:
    position, name = _after_upload(history, data)
    return _insert(history, position, Spec(0, OWNER, Role.INVESTIGATOR, Action.DOWNLOAD_COMPLETED,
                                           item=name, subject="ghost", details={"bytes_sent": 1}))


MUTATIONS: dict[str, list[Mutation]] = {
    "lifecycle.created": [created_again, first_not_created],
    "lifecycle.sealed_once": [sealed_twice],
    "lifecycle.upload_after_seal": [upload_after_seal],
    "lifecycle.upload_once": [uploaded_twice],
    "lifecycle.share_before_seal": [shared_before_seal],
    "lifecycle.revoke_without_share": [revoked_unshared],
    "actor.owner": [not_the_owner],
    "details": [seal_without_manifest],
    "seal.manifest": [seal_wrong_manifest],
    "access.share": [read_without_share, read_after_expiry],
    "access.role": [auditor_downloads],
    "content.digest": [other_bytes_served],
    "download.unmatched": [completed_unstarted],
}


def test_every_rule_has_a_mutation() -> None:
    assert MUTATIONS.keys() == RULES.keys()


@pytest.mark.parametrize("rule,mutation", [(r, m) for r, ms in MUTATIONS.items() for m in ms],
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(history=valid_histories(), data=st.data())
def test_each_rule_broken_alone_is_reported_once_at_its_index(
        rule: str, mutation: Mutation, history: History, data: st.DataObject) -> None:
    mutated = mutation(history, data)
    assume(mutated is not None)
    assert mutated is not None
    specs, position = mutated
    violations = check_package_rules(materialize(specs))
    assert [(v.rule, v.index) for v in violations] == [(rule, index_of(position))], violations
    with pytest.raises(RulesViolated) as caught:
        require_package_rules(materialize(specs))
    assert caught.value.index == index_of(position)
    assert caught.value.violations == tuple(violations)


def test_manifest_matches_the_service_definition() -> None:
    from service.packages.service import manifest_sha256 as service_manifest

    @dataclass
    class Row:
        name: str
        size: int
        sha256: str
        kind: str = "file"
        target: str | None = None

    rows = [Row("b/é.txt", 5, digest("b")), Row("a.txt", 0, digest("a"))]
    assert manifest_sha256(PACKAGE, ((r.name, r.size, r.sha256) for r in rows)) == \
        service_manifest(PACKAGE, rows)  # type: ignore[arg-type]
    rows.append(Row("c/link", 3, digest("t"), "link", "../t"))
    with_link = service_manifest(PACKAGE, rows)  # type: ignore[arg-type]
    assert with_link == manifest_sha256(PACKAGE, (
        (r.name, r.size, r.sha256, r.kind, r.target) for r in rows))
    assert with_link != manifest_sha256(PACKAGE, ((r.name, r.size, r.sha256) for r in rows))


def test_misuse_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_package_rules([])
    entries = materialize([Spec(0, OWNER, Role.INVESTIGATOR, Action.PACKAGE_CREATED)])
    other = replace(entries[0], package="pkg_other")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        check_package_rules([entries[0], other])
