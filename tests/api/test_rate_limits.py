"""Rate limits on the record (review M4, L4): a flood is refused with 429 and recorded in bounded
form; an oversized name is a 422 on the record; metrics never carry names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evx.protocol.names import MAX_NAME_TEXT_CHARS
from service.limits import record_throttled
from service.settings import Settings
from tests.api.conftest import OPERATOR, OWNER, RECIPIENT, STRANGER, World, _world


@pytest.fixture
def tight(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "data", operator_authority=OPERATOR,
                        chunk_size=64 * 1024, max_item_bytes=8 * 1024 * 1024,
                        officer_requests_per_second=0.01, officer_request_burst=5,
                        authority_requests_per_second=0.01, authority_request_burst=8,
                        throttle_window_seconds=3600)
    yield from _world(settings)


def _throttled(world: World, start: int) -> list[dict]:
    return [e for e in world.entries(start) if e["action"] == "requests.throttled"]


def test_a_strangers_flood_is_refused_and_recorded_once_with_its_count(tight: World) -> None:
    # M4: one stranger wrote 2,605 entries in 20 s, one per 404 probe.
    before = tight.ledger_size()
    headers = tight.headers(STRANGER)
    statuses = [tight.client.get(f"/v1/packages/{uuid.uuid4().hex}", headers=headers)
                for _ in range(30)]
    assert [r.status_code for r in statuses] == [404] * 5 + [429] * 25
    refused = statuses[-1]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["type"].endswith("/too-many-requests")
    assert len(tight.entries(before)) == 5  # the refused 25 wrote nothing yet
    assert record_throttled(tight.runtime.request_limits, tight.runtime.recorder, 3600) == 1
    (entry,) = _throttled(tight, before)
    assert entry["actor"]["authority"] == STRANGER
    assert entry["outcome"] == "denied"
    assert entry["details"]["count"] == 25
    assert len(tight.entries(before)) == 6
    # Nothing refused since: the next window writes nothing.
    assert record_throttled(tight.runtime.request_limits, tight.runtime.recorder, 3600) == 0


def test_the_authority_limit_covers_all_its_officers(tight: World) -> None:
    codes = []
    for i in range(4):
        token = tight.token(RECIPIENT, subject=f"officer-{i}")
        for _ in range(3):
            codes.append(tight.client.get("/v1/packages", headers={
                "Authorization": f"Bearer {token}"}).status_code)
    assert codes.count(200) == 8  # the authority's burst, shared by its four officers
    assert codes.count(429) == 4
    # Another authority is not affected.
    assert tight.client.get("/v1/packages", headers=tight.headers(OWNER)).status_code == 200


def test_an_oversized_item_name_is_a_422_on_the_record(world: World) -> None:
    # M4: a 65,400-byte name broke the append: 503 ledger-unavailable, nothing recorded.
    package_id = world.sealed_shared_package()
    before = world.ledger_size()
    failures = world.runtime.metrics.ledger_failures._value.get()
    r = world.client.get(f"/v1/packages/{package_id}/items/{'n' * 65_400}/content",
                         headers=world.headers(RECIPIENT))
    assert r.status_code == 422, r.text
    (entry,) = world.entries(before)
    assert (entry["action"], entry["outcome"]) == ("download.started", "failed")
    assert len(entry["item"]) <= MAX_NAME_TEXT_CHARS
    assert len(entry["reason"]) <= 500
    assert world.runtime.metrics.ledger_failures._value.get() == failures


def test_a_long_missing_name_is_a_bounded_404(world: World) -> None:
    package_id = world.sealed_shared_package()
    before = world.ledger_size()
    name = "/".join(["n" * 250] * 16)  # a valid 4,015-byte name: no such item
    r = world.client.get(f"/v1/packages/{package_id}/items/{name}/content",
                         headers=world.headers(RECIPIENT))
    assert r.status_code == 404
    (entry,) = world.entries(before)
    assert entry["item"] == name and len(entry["reason"]) <= 500


def test_metrics_carry_no_item_names(world: World) -> None:
    # L4: evx_access_denied_total{reason="item '...' already exists"} copied every name.
    package_id = world.create_package()
    for i in range(5):
        world.upload(package_id, f"suspect-Jan-Kowalski-{i}/a.txt", b"x")
        r = world.client.put(f"/v1/packages/{package_id}/items/suspect-Jan-Kowalski-{i}/a.txt",
                             content=b"x", headers=world.headers(OWNER))
        assert r.status_code == 409
    page = world.client.get("/metrics").text
    assert "Kowalski" not in page
    assert 'evx_access_denied_total{action="item.uploaded"} 5.0' in page


def test_metrics_can_require_a_bearer_token(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", operator_authority=OPERATOR,
                        metrics_token="s3cret-metrics", api_docs=False)
    for world in _world(settings):
        assert world.client.get("/metrics").status_code == 401
        assert world.client.get("/metrics", headers={
            "Authorization": "Bearer wrong"}).status_code == 401
        ok = world.client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
        assert ok.status_code == 200 and "evx_http_requests_total" in ok.text
        # I3: /docs can be turned off; the contract stays public.
        assert world.client.get("/docs").status_code == 404
        assert world.client.get("/redoc").status_code == 404
        assert world.client.get("/openapi.json").status_code == 200
