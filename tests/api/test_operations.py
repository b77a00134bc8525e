"""Health, readiness and metrics: what an orchestrator and a monitoring system see."""

from __future__ import annotations

import shutil

from tests.api.conftest import OWNER, RECIPIENT, World


def test_health_and_readiness(world: World) -> None:
    assert world.client.get("/healthz").json() == {"status": "ok"}
    r = world.client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "object_store": "ok", "keys": "ok",
                                  "log_key": "ok"}


def test_not_ready_when_object_store_is_gone(world: World) -> None:
    root = world.settings.objects_dir
    shutil.rmtree(root)
    root.write_bytes(b"not a directory")  # the volume went away / was replaced
    r = world.client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "not ready"
    assert body["checks"]["object_store"].startswith("unavailable")
    assert body["checks"]["database"] == "ok"


def test_metrics_count_requests_bytes_appends_denials(world: World) -> None:
    package_id = world.sealed_shared_package({"m.bin": b"m" * 4096})
    world.client.get(f"/v1/packages/{package_id}/items/m.bin/content",
                     headers=world.headers(RECIPIENT))
    world.client.get("/v1/ledger/entries", headers=world.headers(OWNER))  # denied
    world.client.get("/v1/packages", headers={"Authorization": "Bearer nonsense"})
    text = world.client.get("/metrics").text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    assert samples["evx_evidence_bytes_received_total"] == 4096
    assert samples["evx_evidence_bytes_sent_total"] == 4096
    assert samples['evx_ledger_appends_total{action="item.uploaded",outcome="allowed"}'] == 1
    assert samples['evx_ledger_appends_total{action="download.completed",outcome="allowed"}'] == 1
    assert sum(v for k, v in samples.items() if k.startswith("evx_access_denied_total")) >= 1
    assert samples['evx_unauthenticated_total{reason="malformed"}'] == 1
    assert any(k.startswith("evx_http_requests_total{") and 'status="200"' in k for k in samples)
    assert samples["evx_ledger_append_seconds_count"] >= 5


def test_stale_schema_reported_not_migrated(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.db import downgrade, upgrade
    from service.settings import Settings

    settings = Settings(data_dir=tmp_path / "d", auto_migrate=False)
    settings.data_dir.mkdir()
    upgrade(settings.resolved_database_url)
    downgrade(settings.resolved_database_url, "0002_authorities")  # an older release's schema
    with TestClient(create_app(settings)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert "evx db upgrade" in r.json()["checks"]["database"]
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200


def test_docs_work_offline(world: World) -> None:
    """/docs and /redoc load every asset from the service itself: no CDN, no web fonts."""
    import re

    for page, marker in (("/docs", "SwaggerUIBundle"), ("/redoc", "<redoc")):
        r = world.client.get(page)
        assert r.status_code == 200 and marker in r.text
        assert "http://" not in r.text and "https://" not in r.text, page
        assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert assets, page
        for asset in assets:
            assert asset.startswith("/docs-assets/"), asset
            got = world.client.get(asset)
            assert got.status_code == 200 and len(got.content) > 1000, asset
    assert world.client.get("/openapi.json").status_code == 200
