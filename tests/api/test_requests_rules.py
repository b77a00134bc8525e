"""The chains the service writes for requests pass the custody rules (custody/request_rules.py),
through every kind of step: information asked and given, recognition, postponement, partial and
full execution; refused attempts on the record do not count against them."""

from __future__ import annotations

from custody.rules import check_package_rules
from tests.api.conftest import OWNER, RECIPIENT, World


def test_the_service_writes_chains_that_pass(world: World) -> None:
    w = world
    r = w.client.post("/v1/requests", headers=w.headers(RECIPIENT), json={
        "executing_authority": OWNER, "instrument": "eio", "reference": "EIO-9",
        "case_reference": "C", "offence_category": "fraud", "measures": ["m"]})
    rid = r.json()["id"]
    for authority, step, note in [(OWNER, "ask", "why?"), (RECIPIENT, "answer", "because"),
                                  (OWNER, "recognise", ""), (OWNER, "postpone", "trial"),
                                  (OWNER, "recognise", ""), (OWNER, "execute-partly", ""),
                                  (OWNER, "fulfil", "")]:
        r = w.client.post(f"/v1/requests/{rid}/{step}", headers=w.headers(authority),
                          json={"note": note})
        assert r.status_code == 200, (step, r.text)
    # refused attempts on the record do not count against the chain
    assert w.client.post(f"/v1/requests/{rid}/withdraw",
                         headers=w.headers(RECIPIENT)).status_code == 409
    entries = [e.entry for e in w.runtime.ledger.package_entries(rid)]
    assert [e.action.value for e in entries][:2] == ["request.filed", "request.info_requested"]
    assert check_package_rules(entries) == []
