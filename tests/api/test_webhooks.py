"""Webhooks and the event feed (service/events): deliveries to a real receiving HTTP server,
verified with the Standard Webhooks scheme; a receiver that is down gets the event later; the
delivery log shows every attempt to the authority's auditors; the feed pages with after=."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from service.events import repository as events
from service.settings import Settings
from tests.api.conftest import OPERATOR, OWNER, RECIPIENT, World, _world
from tests.client.harness import free_port
from tests.support.webhook_receiver import Receiver

DE, FR = OWNER, RECIPIENT


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "data", operator_authority=OPERATOR,
                        chunk_size=64 * 1024, webhook_retry_schedule="1,1",
                        webhook_timeout_seconds=5)
    yield from _world(settings)


def subscribe(w: World, authority: str, url: str, secret: str,
              types: list[str] | None = None) -> str:
    with w.runtime.engine.begin() as conn:
        return events.add_endpoint(conn, authority=authority, url=url, secret=secret,
                                   event_types=types or [], now=w.runtime.gate.now()).id


def file_request(w: World, urgency: str = "normal") -> str:
    r = w.client.post("/v1/requests", headers=w.headers(FR), json={
        "executing_authority": DE, "instrument": "eu-2023-1543-production",
        "reference": "EPOC-FR-1", "case_reference": "C-9", "offence_category": "fraud",
        "measures": ["subscriber data"], "urgency": urgency})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_signed_delivery_and_a_receiver_that_was_down(hub: World) -> None:
    w = hub
    secret = new_secret()
    receiver = Receiver(secret, free_port())  # not started: nothing listens on its port yet
    subscribe(w, DE, receiver.url, secret)
    rid = file_request(w)

    assert w.runtime.notifier.deliver_due() == 1  # refused connection: retried in 1 s
    log = w.client.get("/v1/webhooks", headers=w.headers(DE, "auditor")).json()
    (pending,) = log["deliveries"]
    assert pending["status"] == "pending" and pending["attempts"] == 1
    assert pending["attempts_log"][0]["status_code"] is None
    assert "Connect" in pending["attempts_log"][0]["error"]

    receiver.start()
    try:
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            w.runtime.notifier.deliver_due()
            time.sleep(0.2)
        (got,) = receiver.wait_for(1)
    finally:
        receiver.stop()
    assert got.verified, got.error
    assert got.payload["type"] == "request.filed"
    assert got.payload["data"]["request"] == rid
    assert got.payload["data"]["next_deadline"]["milestone"] == "comply"
    assert got.headers["webhook-signature"].startswith("v1,")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60

    # The same id as the event in DE's feed; the log shows both attempts.
    feed = w.client.get("/v1/events?after=0", headers=w.headers(DE)).json()
    assert [(e["id"], e["type"]) for e in feed["events"]] == [(got.id, "request.filed")]
    log = w.client.get("/v1/webhooks", headers=w.headers(DE, "auditor")).json()
    (done,) = log["deliveries"]
    assert done["status"] == "delivered" and done["event_id"] == got.id
    assert [a["status_code"] for a in done["attempts_log"]] == [None, 200]
    # A wrong secret does not verify: the receiver would reject a forged delivery.
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(got.body, got.headers)


def test_only_commits_that_fill_the_outbox_wake_the_notifier(hub: World) -> None:
    # Issue 11: every commit woke the notifier, its own round's commit too -- a busy loop that
    # kept a core and the database busy even on an idle replica (/healthz p99 of seconds).
    notifier = hub.runtime.notifier
    notifier.wake()
    notifier._wake.clear()
    assert notifier.deliver_due() == 0  # a round commits (the lease query)
    assert not notifier.woken
    file_request(hub)  # an event but no subscriber: nothing in the outbox
    assert not notifier.woken
    secret = new_secret()
    subscribe(hub, FR, f"http://127.0.0.1:{free_port()}/", secret,
              types=["request.acknowledged"])
    file_request(hub)  # FR's endpoint does not want this one: still nothing to deliver
    assert not notifier.woken
    subscribe(hub, DE, f"http://127.0.0.1:{free_port()}/", secret)
    file_request(hub)
    assert notifier.woken


def test_failures_retry_on_the_schedule_then_give_up(hub: World) -> None:
    w = hub
    secret = new_secret()
    receiver = Receiver(secret, free_port(), mode="fail").start()
    try:
        subscribe(w, FR, receiver.url, secret, types=["request.acknowledged"])
        rid = file_request(w)  # FR's endpoint only wants acknowledgements
        assert w.runtime.notifier.deliver_due() == 0
        assert w.client.post(f"/v1/requests/{rid}/acknowledge",
                             headers=w.headers(DE)).status_code == 200
        for _ in range(3):  # the first try and two retries (schedule "1,1")
            deadline = time.monotonic() + 5
            while w.runtime.notifier.deliver_due() == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
        got = receiver.wait_for(3)
    finally:
        receiver.stop()
    assert len({r.id for r in got}) == 1  # every retry carries the same id
    assert len({r.body for r in got}) == 1  # and the same bytes
    assert all(r.verified for r in got)
    log = w.client.get("/v1/webhooks?status=failed", headers=w.headers(FR, "auditor")).json()
    (failed,) = log["deliveries"]
    assert failed["attempts"] == 3 and failed["event_type"] == "request.acknowledged"
    assert [a["status_code"] for a in failed["attempts_log"]] == [500, 500, 500]
    assert w.runtime.notifier.deliver_due() == 0
    assert w.client.get("/v1/webhooks", headers=w.headers(FR)).status_code == 403


def test_event_feed_and_what_each_authority_is_told(hub: World) -> None:
    w = hub
    rid = file_request(w, urgency="emergency")
    for step in ("acknowledge", "recognise"):
        assert w.client.post(f"/v1/requests/{rid}/{step}",
                             headers=w.headers(DE)).status_code == 200
    package = w.create_package(DE)
    w.upload(package, "data.csv", b"a,b\n")
    assert w.client.post(f"/v1/packages/{package}/seal", headers=w.headers(DE)).status_code == 200
    assert w.client.post(f"/v1/requests/{rid}/deliveries", headers=w.headers(DE),
                         json={"package": package}).status_code == 201
    assert w.client.get(f"/v1/packages/{package}/items/data.csv/content",
                        headers=w.headers(FR)).status_code == 200
    # Emergency production order: 8 hours, so the deadline is already within the warning.
    assert w.runtime.notifier.scan() == 2
    assert w.runtime.notifier.scan() == 0  # once each

    fr = w.client.get("/v1/events", headers=w.headers(FR, "auditor")).json()
    de = w.client.get("/v1/events", headers=w.headers(DE)).json()
    assert [e["type"] for e in fr["events"]] == [
        "request.filed", "request.acknowledged", "request.recognised", "share.created",
        "request.delivered", "request.deadline_approaching"]
    assert [e["type"] for e in de["events"]] == [
        "request.filed", "request.acknowledged", "request.recognised", "request.delivered",
        "package.downloaded", "request.deadline_approaching"]
    # Paging with after=: only what came later.
    later = w.client.get(f"/v1/events?after={fr['events'][2]['seq']}",
                         headers=w.headers(FR)).json()
    assert [e["type"] for e in later["events"]] == [e["type"] for e in fr["events"][3:]]
    assert later["last"] == fr["events"][-1]["seq"]
    empty = w.client.get(f"/v1/events?after={later['last']}", headers=w.headers(FR)).json()
    assert empty == {"events": [], "last": later["last"]}
    # Another authority hears nothing of it.
    assert w.client.get("/v1/events", headers=w.headers("IT-DCSA")).json()["events"] == []
    assert w.client.get("/v1/events?after=-1", headers=w.headers(FR)).status_code == 422
