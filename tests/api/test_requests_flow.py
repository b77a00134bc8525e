"""The request flow of issue 16 across two authorities, on the embedded defaults and on real
PostgreSQL + SeaweedFS: FR files an EIO with its signed form, DE acknowledges, asks for
information, FR answers, DE recognises, DE seals and shares a package answering it, FR downloads,
DE marks it fulfilled. Both custody views verify and show the same sequence; the deadlines at each
step are the rules table's."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from custody.rules import check_package_rules
from service.requests.deadlines import DEFAULT_RULES, Instrument, Milestone, Urgency, period_end
from tests.api.conftest import OWNER, RECIPIENT, World
from tests.api.custody_check import verify_custody_response

DE, FR = OWNER, RECIPIENT  # DE-BKA executes, FR-OCRTEH requests
FORM = b"%PDF-1.7 signed EIO form, Annex A\n"
EIO_RULES = {r.milestone: r for r in DEFAULT_RULES[(Instrument.EIO, Urgency.NORMAL)]}
BERLIN = ZoneInfo("Europe/Berlin")


def _due(start: str, milestone: Milestone) -> datetime:
    rule = EIO_RULES[milestone]
    return period_end(datetime.fromisoformat(start), rule.amount, rule.unit, BERLIN)


def _post(w: World, path: str, authority: str, body: dict | None = None,
          status: int = 200) -> dict:
    r = w.client.post(path, headers=w.headers(authority), json=body or {})
    assert r.status_code == status, r.text
    return dict(r.json())


def _show(w: World, request_id: str, authority: str = DE, role: str = "investigator") -> dict:
    r = w.client.get(f"/v1/requests/{request_id}", headers=w.headers(authority, role))
    assert r.status_code == 200, r.text
    return dict(r.json())


def _flow(w: World) -> None:
    key = w.client.get("/v1/ledger/key").text.strip()
    # FR's signed form: an evidence item like any other, sealed in a package of FR's.
    form_package = w.create_package(FR)
    w.upload(form_package, "eio-form-signed.pdf", FORM, authority=FR)
    _post(w, f"/v1/packages/{form_package}/seal", FR)

    filed = _post(w, "/v1/requests", FR, {
        "executing_authority": DE, "instrument": "eio", "reference": "EIO-FR-2026-0042",
        "case_reference": "OCRTEH-2026-117", "offence_category": "computer-related fraud",
        "measures": ["obtain subscriber data", "obtain stored content of account x"],
        "urgency": "normal", "confidentiality": "Do not inform the account holder.",
        "attachments_package": form_package}, status=201)
    rid = filed["id"]
    assert filed["state"] == "filed" and filed["timezone"] == "Europe/Berlin"
    assert filed["next_deadline"]["milestone"] == "acknowledge"
    assert datetime.fromisoformat(filed["next_deadline"]["due_at"]) == \
        _due(filed["filed_at"], Milestone.ACKNOWLEDGE)
    assert "(Europe/Berlin)" in filed["next_deadline"]["due_local"]

    # DE sees it, and the signed form arrived with the request's legal basis.
    r = w.client.get(f"/v1/packages/{form_package}/items/eio-form-signed.pdf/content",
                     headers=w.headers(DE))
    assert r.status_code == 200 and r.content == FORM
    incoming = w.client.get("/v1/requests?side=incoming", headers=w.headers(DE)).json()
    assert [x["id"] for x in incoming["requests"]] == [rid]

    acked = _post(w, f"/v1/requests/{rid}/acknowledge", DE)
    assert acked["state"] == "acknowledged"
    assert acked["next_deadline"]["milestone"] == "recognise"
    assert datetime.fromisoformat(acked["next_deadline"]["due_at"]) == \
        _due(filed["filed_at"], Milestone.RECOGNISE)

    asked = _post(w, f"/v1/requests/{rid}/ask", DE,
                  {"note": "Please give the account's creation date."})
    assert asked["state"] == "info_requested"
    answered = _post(w, f"/v1/requests/{rid}/answer", FR,
                     {"note": "Created 2025-11-03, per the provider's letter."})
    assert answered["state"] == "acknowledged"

    recognised = _post(w, f"/v1/requests/{rid}/recognise", DE)
    assert recognised["state"] == "recognised"
    shown = _show(w, rid)
    rec_at = next(h["at"] for h in shown["history"] if h["action"] == "request.recognised")
    assert recognised["next_deadline"]["milestone"] == "execute"
    assert datetime.fromisoformat(recognised["next_deadline"]["due_at"]) == \
        _due(rec_at, Milestone.EXECUTE)

    # DE seals a package and shares it as the answer: basis and reference from the request.
    answer = w.create_package(DE)
    w.upload(answer, "subscriber.csv", b"account,created\nx,2025-11-03\n")
    _post(w, f"/v1/packages/{answer}/seal", DE)
    _post(w, f"/v1/requests/{rid}/deliveries", DE, {"package": answer}, status=201)
    share = w.client.get(f"/v1/packages/{answer}", headers=w.headers(FR)).json()["share"]
    assert share["request_reference"] == "EIO-FR-2026-0042"
    assert share["legal_basis"].startswith("Directive 2014/41/EU")

    r = w.client.get(f"/v1/packages/{answer}/items/subscriber.csv/content", headers=w.headers(FR))
    assert r.status_code == 200
    delivered = _show(w, rid, FR)["deliveries"]
    assert [(d["package"], d["items_downloaded"]) for d in delivered] == [(answer, 1)]

    done = _post(w, f"/v1/requests/{rid}/fulfil", DE)
    assert done["state"] == "executed" and done["next_deadline"] is None
    final = _show(w, rid, FR, "auditor")
    assert all(not d["open"] for d in final["deadlines"])
    assert {d["milestone"] for d in final["deadlines"]} == {"acknowledge", "recognise", "execute"}

    expected = ["request.filed", "request.acknowledged", "request.info_requested",
                "request.info_provided", "request.recognised", "request.delivered",
                "request.fulfilled"]
    assert [h["action"] for h in final["history"]] == expected
    sequences = []
    for authority in (DE, FR):
        r = w.client.get(f"/v1/requests/{rid}/custody", headers=w.headers(authority, "auditor"))
        assert r.status_code == 200, r.text
        verified = verify_custody_response(r.json(), key, rid)
        assert check_package_rules(list(verified.entries)) == []  # the request rules hold
        actions = [e.action.value for e in verified.entries
                   if e.action.value not in ("request.read", "custody.read")]
        assert actions == expected
        sequences.append([e.leaf_hash() for e in verified.entries
                          if e.action.value in expected])
        delivered_entry = next(e for e in verified.entries
                               if e.action.value == "request.delivered")
        assert delivered_entry.details["delivered_package"] == answer
        assert delivered_entry.legal is not None
        assert delivered_entry.legal.request_reference == "EIO-FR-2026-0042"
    assert sequences[0] == sequences[1]  # the same entries, not merely the same names


def test_request_flow_sqlite_folder(world: World) -> None:
    _flow(world)


@pytest.mark.postgres
@pytest.mark.s3
def test_request_flow_postgres_seaweedfs(pg_s3_world: World) -> None:
    _flow(pg_s3_world)
