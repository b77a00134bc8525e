"""The authorization matrix extended to requests: only the two authorities of a request see it,
their auditors read it and change nothing, each side does only its own transitions, and nobody
else learns it exists (the same 404 as for a made-up id, and no trace in their lists)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api.conftest import OPERATOR, OWNER, RECIPIENT, STRANGER, World

CALLERS = {
    "requesting_investigator": (RECIPIENT, "investigator"),
    "requesting_auditor": (RECIPIENT, "auditor"),
    "executing_investigator": (OWNER, "investigator"),
    "executing_auditor": (OWNER, "auditor"),
    "stranger_investigator": (STRANGER, "investigator"),
    "stranger_auditor": (STRANGER, "auditor"),
    "operator_auditor": (OPERATOR, "auditor"),
    "no_token": (None, None),
}
ALL_404 = dict(stranger_investigator=404, stranger_auditor=404, operator_auditor=404,
               no_token=401)
MATRIX: dict[str, dict[str, int]] = {
    "show": dict(requesting_investigator=200, requesting_auditor=200, executing_investigator=200,
                 executing_auditor=200, **ALL_404),
    "custody": dict(requesting_investigator=200, requesting_auditor=200,
                    executing_investigator=200, executing_auditor=200, **ALL_404),
    "acknowledge": dict(requesting_investigator=403, requesting_auditor=403,
                        executing_investigator=200, executing_auditor=403, **ALL_404),
    "withdraw": dict(requesting_investigator=200, requesting_auditor=403,
                     executing_investigator=403, executing_auditor=403, **ALL_404),
    "deliver": dict(requesting_investigator=403, requesting_auditor=403,
                    executing_investigator=201, executing_auditor=403, **ALL_404),
}


def _file(w: World) -> str:
    r = w.client.post("/v1/requests", headers=w.headers(RECIPIENT), json={
        "executing_authority": OWNER, "instrument": "budapest-art29", "reference": "PRES-1",
        "case_reference": "C-1", "offence_category": "ransomware", "measures": ["preserve"],
        "urgency": "urgent"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _call(w: World, endpoint: str, rid: str, caller: str) -> int:
    authority, role = CALLERS[caller]
    headers = w.headers(authority, role) if authority else {}
    if endpoint == "show":
        return w.client.get(f"/v1/requests/{rid}", headers=headers).status_code
    if endpoint == "custody":
        return w.client.get(f"/v1/requests/{rid}/custody", headers=headers).status_code
    if endpoint == "deliver":
        package = w.create_package(OWNER)
        w.upload(package, "a.txt", b"a")
        assert w.client.post(f"/v1/packages/{package}/seal",
                             headers=w.headers(OWNER)).status_code == 200
        return w.client.post(f"/v1/requests/{rid}/deliveries", headers=headers,
                             json={"package": package}).status_code
    return w.client.post(f"/v1/requests/{rid}/{endpoint}", headers=headers,
                         json={}).status_code


@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_matrix(world: World, endpoint: str) -> None:
    w = world
    rid = _file(w)
    if endpoint == "deliver":  # deliverable once acknowledged
        assert w.client.post(f"/v1/requests/{rid}/acknowledge",
                             headers=w.headers(OWNER)).status_code == 200
    got = {}
    for caller in MATRIX[endpoint]:
        # Mutations that succeed change the state: each caller gets a fresh request.
        target = _file(w) if endpoint in ("acknowledge", "withdraw") else rid
        got[caller] = _call(w, endpoint, target, caller)
    assert got == MATRIX[endpoint]


def test_strangers_cannot_tell_it_exists(world: World) -> None:
    w = world
    rid = _file(w)
    made_up = "req_" + "0" * 32
    for authority, role in [(STRANGER, "investigator"), (STRANGER, "auditor"),
                            (OPERATOR, "auditor")]:
        for path in ("", "/custody"):
            real = w.client.get(f"/v1/requests/{rid}{path}", headers=w.headers(authority, role))
            fake = w.client.get(f"/v1/requests/{made_up}{path}",
                                headers=w.headers(authority, role))
            assert real.status_code == fake.status_code == 404
            body_real, body_fake = real.json(), fake.json()
            assert body_real["type"] == body_fake["type"]
            assert body_real["detail"].replace(rid, "ID") == body_fake["detail"].replace(
                made_up, "ID")
        listed = w.client.get("/v1/requests", headers=w.headers(authority, role)).json()
        assert listed["requests"] == []
        # The refusal is on the record, without the request as its subject.
        denied = [e for e in w.entries() if e["outcome"] == "denied"
                  and e["actor"]["authority"] == authority]
        assert denied and all(e["package"] is None for e in denied)
        assert any(e["details"].get("requested_request") == rid for e in denied)
    # Both authorities list it; the requesting side as outgoing, the executing as incoming.
    out = w.client.get("/v1/requests?side=outgoing", headers=w.headers(RECIPIENT)).json()
    inc = w.client.get("/v1/requests?side=incoming", headers=w.headers(OWNER, "auditor")).json()
    assert [r["id"] for r in out["requests"]] == [r["id"] for r in inc["requests"]] == [rid]
    assert w.client.get("/v1/requests?side=incoming",
                        headers=w.headers(RECIPIENT)).json()["requests"] == []


def test_wrong_state_and_missing_grounds(world: World) -> None:
    w = world
    rid = _file(w)
    r = w.client.post(f"/v1/requests/{rid}/fulfil", headers=w.headers(OWNER))
    assert r.status_code == 409 and r.json()["type"].endswith("/request-state")
    assert "the request is filed" in r.json()["detail"]
    r = w.client.post(f"/v1/requests/{rid}/refuse", headers=w.headers(OWNER), json={})
    assert r.status_code == 422 and "grounds" in r.json()["detail"]
    r = w.client.post(f"/v1/requests/{rid}/refuse", headers=w.headers(OWNER),
                      json={"note": "Art. 11(1)(a): immunity"})
    assert r.status_code == 200 and r.json()["state"] == "refused"
    assert r.json()["next_deadline"] is None
    r = w.client.post(f"/v1/requests/{rid}/withdraw", headers=w.headers(RECIPIENT))
    assert r.status_code == 409
    failed = [e for e in w.entries() if e["package"] == rid and e["outcome"] != "allowed"]
    assert [(e["action"], e["outcome"]) for e in failed] == [
        ("request.fulfilled", "failed"), ("request.refused", "failed"),
        ("request.withdrawn", "failed")]
    r = w.client.post("/v1/requests", headers=w.headers(RECIPIENT), json={
        "executing_authority": "XX-NOBODY", "instrument": "eio", "reference": "R",
        "case_reference": "C", "offence_category": "fraud", "measures": ["m"]})
    assert r.status_code == 422 and "trust registry" in r.json()["detail"]
    r = w.client.post("/v1/requests", headers=w.headers(RECIPIENT, "auditor"), json={
        "executing_authority": OWNER, "instrument": "eio", "reference": "R",
        "case_reference": "C", "offence_category": "fraud", "measures": ["m"]})
    assert r.status_code == 403


def test_lists_filter_and_sort_by_next_deadline(world: World) -> None:
    w = world
    gate = w.runtime.gate
    real = gate.clock
    ids = {}
    for reference, instrument, urgency in [("A", "eio", "normal"),
                                           ("B", "eu-2023-1543-production", "emergency"),
                                           ("C", "mla-treaty", "normal")]:
        r = w.client.post("/v1/requests", headers=w.headers(RECIPIENT), json={
            "executing_authority": OWNER, "instrument": instrument, "reference": reference,
            "case_reference": "C", "offence_category": "fraud", "measures": ["m"],
            "urgency": urgency})
        ids[reference] = r.json()["id"]
    done = _file(w)  # Budapest art. 29: refused at once, so no deadline is open
    w.client.post(f"/v1/requests/{done}/refuse", headers=w.headers(OWNER), json={"note": "no"})

    def listed(query: str) -> list[str]:
        r = w.client.get(f"/v1/requests?{query}", headers=w.headers(OWNER))
        assert r.status_code == 200, r.text
        return [x["reference"] for x in r.json()["requests"]]

    # 8 h (B), 7 days (A), 14 days (C); the refused one has none and comes last.
    assert listed("sort=due") == ["B", "A", "C", "PRES-1"]
    assert listed("due_within=1d") == ["B"]
    assert listed("due_within=P8D") == ["B", "A"]
    assert listed("overdue=true") == []
    assert listed("open=true") == ["B", "A", "C"]
    assert listed("state=refused") == ["PRES-1"]
    try:
        later = real() + timedelta(days=8, hours=12)
        gate.clock = lambda: later
        assert listed("overdue=true") == ["B", "A"]
        r = w.client.get(f"/v1/requests/{ids['A']}", headers=w.headers(RECIPIENT)).json()
        assert r["next_deadline"]["overdue"] is True
        assert [d["overdue"] for d in r["deadlines"] if d["milestone"] == "acknowledge"] == [True]
    finally:
        gate.clock = real
    r = w.client.get("/v1/requests?due_within=soon", headers=w.headers(OWNER))
    assert r.status_code == 422 and "duration" in r.json()["detail"]
