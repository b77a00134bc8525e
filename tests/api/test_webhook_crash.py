"""The outbox survives the hub's death: a real `evx serve` process is SIGKILLed while a webhook
is in flight (committed, sent, not yet acknowledged); after a restart the event is delivered,
with the same webhook-id as the delivery that was cut off, and the signature verifies."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.api.test_webhooks import new_secret
from tests.client.harness import EvxServer, free_port
from tests.support.webhook_receiver import Receiver

DE, FR = "DE-BKA", "FR-OCRTEH"


@pytest.mark.slow
def test_sigkill_between_commit_and_delivery_loses_nothing(tmp_path: Path) -> None:
    server = EvxServer(tmp_path, extra_env={"EVX_WEBHOOK_RETRY_SCHEDULE": "1,1,1",
                                            "EVX_WEBHOOK_POLL_SECONDS": "0.5",
                                            "EVX_WEBHOOK_TIMEOUT_SECONDS": "3"})
    server.add_authority(DE, "DE", "investigator,auditor")
    server.add_authority(FR, "FR", "investigator,auditor")
    receiver = Receiver("", free_port(), mode="hold")
    added = json.loads(server.admin("webhook", "add", DE, receiver.url, "--json"))
    receiver.secret = added["secret"]
    receiver.start()
    fr = server.user(FR, "investigator", "luc")
    try:
        server.start()
        r = httpx.post(server.url + "/v1/requests", headers={
            "Authorization": f"Bearer {fr.token}"}, json={
            "executing_authority": DE, "instrument": "eio", "reference": "EIO-FR-7",
            "case_reference": "C-7", "offence_category": "fraud", "measures": ["hearing"]})
        assert r.status_code == 201, r.text  # committed: request, event and outbox row
        (first,) = receiver.wait_for(1)  # the hub is sending it; the receiver holds it
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=20)
        server.process = None

        receiver.mode = "ok"
        receiver.release.set()
        server.start()
        got = receiver.wait_for(2, timeout=60)
    finally:
        server.stop()
        receiver.stop()
    second = got[1]
    assert first.id == second.id  # the repeat is recognisable as the same event
    assert first.body == second.body
    assert first.verified and second.verified
    assert second.payload["type"] == "request.filed"
    assert second.payload["data"]["reference"] == "EIO-FR-7"
    # The delivery log (what DE's auditors see at GET /v1/webhooks), read from the database.
    from service.db import make_engine
    from service.events.repository import delivery_log

    engine = make_engine(f"sqlite:///{server.data_dir / 'evidence.db'}")
    with engine.connect() as conn:
        (delivery,) = delivery_log(conn, DE, 10)
    engine.dispose()
    assert delivery.status == "delivered" and delivery.event_id == first.id
    assert delivery.last_status == 200


@pytest.mark.slow
def test_webhook_add_refuses_bad_urls_and_unknown_authorities(tmp_path: Path) -> None:
    import subprocess

    from tests.client.harness import EVX

    server = EvxServer(tmp_path)
    server.add_authority(DE, "DE", "investigator")
    for args, code in [(["webhook", "add", DE, "ftp://x"], 2),
                       (["webhook", "disable", "ep_nope"], 4)]:
        proc = subprocess.run([*EVX, *args], env=server.env(), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    listed = json.loads(server.admin("webhook", "list", "--json"))
    assert listed == {"ok": True, "endpoints": []}
    assert new_secret().startswith("whsec_")
