"""`evx request ...` and `evx events` as users run them, against a real `evx serve`: FR files an
EIO with its signed form, DE acknowledges, asks, FR answers, DE recognises, delivers a sealed
package, FR downloads it, DE marks the request fulfilled; lists filter by deadline; refusals
exit with the documented statuses; the event feed follows it all."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import World, build_world
from tests.client.harness import EVX, OWNER, RECIPIENT, EvxServer

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes


@pytest.fixture
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A server of this test's own: the event feed is read from its start (event 0), which the
    session's shared server has long passed."""
    server = EvxServer(tmp_path_factory.mktemp("evx-requests"))
    try:
        yield build_world(server)
    finally:
        server.stop()


@pytest.mark.slow
def test_request_flow_through_the_cli(embedded: World, tmp_path: Path) -> None:
    de, fr = embedded.investigator, embedded.recipient
    form = tmp_path / "eio-form-signed.pdf"
    form.write_bytes(b"%PDF-1.7 Annex A, signed\n")
    filed = fr.json("request", "create", "--to", OWNER, "--instrument", "eio",
                    "--reference", "EIO-FR-2026-77", "--case-ref", "OCRTEH-77",
                    "--offence", "computer-related fraud", "--measure", "subscriber data",
                    "--measure", "traffic data", "--form", str(form))
    rid = filed["id"]
    assert filed["state"] == "filed" and filed["attachments_package"]
    assert filed["next_deadline"]["milestone"] == "acknowledge"

    soon = de.json("request", "list", "--incoming", "--due-within", "8d")
    assert rid in [r["id"] for r in soon["requests"]]
    table = de.run("request", "list", "--incoming").stdout
    assert rid in table and "acknowledge by" in table

    assert de.json("request", "ack", rid)["state"] == "acknowledged"
    assert de.json("request", "ask", rid, "--note", "Account creation date?")["state"] \
        == "info_requested"
    assert fr.json("request", "answer", rid, "--note", "2025-11-03")["state"] == "acknowledged"
    assert de.json("request", "recognise", rid)["next_deadline"]["milestone"] == "execute"

    answer = de.json("package", "create", "--case-ref", "BKA-77", "--title", "Answer")["id"]
    data = tmp_path / "subscriber.csv"
    data.write_text("account,created\nx,2025-11-03\n")
    de.json("upload", answer, str(data))
    de.json("seal", answer)
    delivered = de.json("request", "deliver", rid, answer)
    assert delivered["id"] == rid
    got = fr.json("download", answer, "-o", str(tmp_path / "received"))
    assert got["ok"] is True
    assert (tmp_path / "received" / "subscriber.csv").read_bytes() == data.read_bytes()
    assert de.json("request", "fulfil", rid)["state"] == "executed"

    shown = fr.json("request", "show", rid)
    assert [h["action"] for h in shown["history"]] == [
        "request.filed", "request.acknowledged", "request.info_requested",
        "request.info_provided", "request.recognised", "request.delivered",
        "request.fulfilled"]
    assert shown["deliveries"][0]["items_downloaded"] == 1
    human = fr.run("request", "show", rid).stdout
    assert "Europe/Berlin" in human and "Directive 2014/41/EU art. 12(3)" in human

    # Both authorities' auditors verify the request's chain (proofs, chain, rules) and see the
    # same entries.
    views = [auditor.json("custody", rid) for auditor in (embedded.owner_auditor,
                                                          embedded.recipient_auditor)]
    assert all(v["verified"] for v in views)
    steps = [[(e["index"], e["action"]) for e in v["entries"]
              if e["action"] not in ("request.read", "custody.read")] for v in views]
    assert steps[0] == steps[1] and [a for _, a in steps[0]][-1] == "request.fulfilled"

    # Refusals: a step the state does not allow (2), the wrong side (4), a stranger (4).
    wrong_state = fr.run("request", "withdraw", rid, "--json", expect=2)
    assert json.loads(wrong_state.stdout)["ok"] is False
    assert "executed" in wrong_state.stderr
    fr.run("request", "ack", rid, expect=4)
    stranger = embedded.operator_auditor.run("request", "show", rid, expect=4)
    assert "not found" in stranger.stderr and "Traceback" not in stranger.stderr
    fr.run("request", "list", "--due-within", "soon", expect=2)

    feed = fr.json("events")
    types = [e["type"] for e in feed["events"] if e["data"].get("request") == rid]
    assert types == ["request.filed", "request.acknowledged", "request.info_requested",
                     "request.info_provided", "request.recognised", "request.delivered",
                     "request.fulfilled"]
    # --follow prints each event as one JSON line, and keeps going until stopped.
    follow = subprocess.Popen([*EVX, "events", "--follow", "--json", "--after", "0"],
                              env=de.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert follow.stdout is not None
        # DE first hears of the signed form shared with it, then of the request.
        lines = [json.loads(follow.stdout.readline()) for _ in range(2)]
        assert [e["type"] for e in lines] == ["share.created", "request.filed"]
        first = lines[1]
        assert first["data"]["request"] == rid and lines[0]["data"]["package"] == \
            filed["attachments_package"]
    finally:
        follow.kill()
        follow.wait(timeout=10)
    assert RECIPIENT in first["data"]["requesting_authority"]
