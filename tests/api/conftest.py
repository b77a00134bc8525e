"""An app on real backends with four authorities and tokens for their officers.

``world`` runs on the embedded defaults (SQLite file + local folder); ``pg_s3_world`` on real
PostgreSQL + SeaweedFS (marked, required in CI).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.identity.issuer import create_authority, mint_token
from service.runtime import Runtime, build_runtime
from service.settings import Settings

OWNER, RECIPIENT, STRANGER, OPERATOR = "DE-BKA", "FR-OCRTEH", "IT-DCSA", "EU-OPERATOR"
BOTH_ROLES = ("investigator", "auditor")


@dataclass
class World:
    client: TestClient
    runtime: Runtime
    settings: Settings
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def token(self, authority: str, role: str = "investigator", *, subject: str | None = None,
              ttl: timedelta = timedelta(minutes=30)) -> str:
        with self.runtime.engine.begin() as conn:
            return mint_token(conn, self.settings.data_dir, authority,
                              subject=subject or f"{role}-{authority.lower()}", role=role,
                              audience=self.settings.audience, ttl=ttl)

    def headers(self, authority: str, role: str = "investigator") -> dict[str, str]:
        key = (authority, role)
        if key not in self.tokens:
            self.tokens[key] = self.token(authority, role)
        return {"Authorization": f"Bearer {self.tokens[key]}"}

    def ledger_size(self) -> int:
        return int(self.runtime.ledger.tree_size())

    def entries(self, start: int = 0) -> list[dict]:
        size = self.ledger_size()
        if size <= start:
            return []
        return [e.entry.to_dict() for e in self.runtime.ledger.entries(start, size - start)]

    # -- flows -------------------------------------------------------------------------------
    def create_package(self, authority: str = OWNER) -> str:
        r = self.client.post("/v1/packages", headers=self.headers(authority),
                             json={"case_reference": "CASE-2026-17", "title": "Phone extraction",
                                   "description": "seized handset"})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def upload(self, package_id: str, name: str, data: bytes,
               authority: str = OWNER) -> dict:
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        r = self.client.put(f"/v1/packages/{package_id}/items/{quote(name, safe='/')}",
                            content=data,
                            headers={**self.headers(authority),
                                     "Content-Digest": f"sha-256=:{digest}:"})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def sealed_shared_package(self, items: dict[str, bytes] | None = None,
                              expires_at: str | None = None) -> str:
        package_id = self.create_package()
        for name, data in (items or {"report.pdf": b"%PDF-1.7 evidence"}).items():
            self.upload(package_id, name, data)
        r = self.client.post(f"/v1/packages/{package_id}/seal", headers=self.headers(OWNER))
        assert r.status_code == 200, r.text
        body = {"authority": RECIPIENT, "legal_basis": "EIO Directive 2014/41/EU art. 1",
                "request_reference": "MLA-FR-2026-0042"}
        if expires_at:
            body["expires_at"] = expires_at
        r = self.client.post(f"/v1/packages/{package_id}/shares", headers=self.headers(OWNER),
                             json=body)
        assert r.status_code == 201, r.text
        return package_id


def _populate(runtime: Runtime, data_dir: Path) -> None:
    with runtime.engine.begin() as conn:
        create_authority(conn, OWNER, name="Bundeskriminalamt", country="DE", roles=BOTH_ROLES,
                         data_dir=data_dir)
        create_authority(conn, RECIPIENT, name="OCRTEH", country="FR", roles=BOTH_ROLES,
                         data_dir=data_dir)
        create_authority(conn, STRANGER, name="DCSA", country="IT", roles=BOTH_ROLES,
                         data_dir=data_dir)
        create_authority(conn, OPERATOR, name="Hub operator", country="EU", roles=("auditor",),
                         data_dir=data_dir)


_TEMPLATE: list[Path] = []  # the populated embedded data folder, made once per process


def _template_data_dir() -> Path:
    """A data folder migrated and populated (four authorities) once; copied per test, since
    migrating and registering cost more than the tests themselves."""
    if not _TEMPLATE:
        root = Path(tempfile.mkdtemp(prefix="evx-world-template-"))
        atexit.register(shutil.rmtree, root, True)
        settings = Settings(data_dir=root / "data", operator_authority=OPERATOR)
        runtime = build_runtime(settings)
        try:
            _populate(runtime, settings.data_dir)
        finally:
            runtime.close()
        _TEMPLATE.append(settings.data_dir)
    return _TEMPLATE[0]


def _world(settings: Settings) -> Iterator[World]:
    embedded = settings.database_url is None and settings.object_store == "filesystem" and \
        settings.kek_dir is None and settings.log_key_file is None
    copied = embedded and not settings.data_dir.exists() and \
        settings.operator_authority == OPERATOR
    if copied:
        shutil.copytree(_template_data_dir(), settings.data_dir)
    runtime = build_runtime(settings)
    if not copied:
        _populate(runtime, settings.data_dir)
    app = create_app(settings, runtime)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield World(client, runtime, settings)
    runtime.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "data", operator_authority=OPERATOR,
                        chunk_size=64 * 1024, max_item_bytes=8 * 1024 * 1024)
    yield from _world(settings)


@pytest.fixture
def pg_s3_world(tmp_path: Path, pg_migrated_url: str, seaweed,
                s3_bucket: str) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "data", operator_authority=OPERATOR,
                        database_url=pg_migrated_url, object_store="s3",
                        s3_endpoint=seaweed.endpoint,
                        s3_access_key=seaweed.access_key, s3_secret_key=seaweed.secret_key,
                        s3_bucket=s3_bucket, chunk_size=64 * 1024,
                        max_item_bytes=64 * 1024 * 1024)
    yield from _world(settings)
