"""A real `evx serve` process for the hostile-caller tests, and a small HTTP helper to drive it
the way a (misbehaving) partner's software would: raw HTTP, no `evx` client safety nets."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client.harness import OPERATOR, OWNER, RECIPIENT, EvxServer

STRANGER = "IT-DCSA"


@dataclass
class Hub:
    """A running server, its officers' tokens, and helpers over raw HTTP."""

    server: EvxServer
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def create_package(self, who: str = "owner") -> str:
        r = httpx.post(f"{self.url}/v1/packages", headers=self.headers(who),
                       json={"case_reference": "HOSTILE-1", "title": "t"}, timeout=30)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def upload(self, package_id: str, name: str, data: bytes, who: str = "owner") -> None:
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        r = httpx.put(f"{self.url}/v1/packages/{package_id}/items/{name}", content=data,
                      headers={**self.headers(who), "Content-Digest": f"sha-256=:{digest}:"},
                      timeout=120)
        assert r.status_code == 201, r.text

    def seal_and_share(self, package_id: str) -> None:
        r = httpx.post(f"{self.url}/v1/packages/{package_id}/seal", headers=self.headers("owner"),
                       timeout=30)
        assert r.status_code == 200, r.text
        r = httpx.post(f"{self.url}/v1/packages/{package_id}/shares",
                       headers=self.headers("owner"), timeout=30,
                       json={"authority": RECIPIENT, "legal_basis": "EIO 2014/41/EU",
                             "request_reference": "MLA-1"})
        assert r.status_code == 201, r.text

    def revoke(self, package_id: str) -> None:
        r = httpx.delete(f"{self.url}/v1/packages/{package_id}/shares/{RECIPIENT}",
                         headers=self.headers("owner"), timeout=30)
        assert r.status_code == 200, r.text

    def entries(self, start: int = 0) -> list[dict[str, Any]]:
        """Ledger entries from ``start`` on (as the operator's auditor)."""
        out: list[dict[str, Any]] = []
        while True:
            r = httpx.get(f"{self.url}/v1/ledger/entries", headers=self.headers("operator"),
                          params={"start": start + len(out), "limit": 1000}, timeout=60)
            assert r.status_code == 200, r.text
            body = r.json()
            out.extend(e["entry"] for e in body["entries"])
            if not body["entries"] or start + len(out) >= body["tree_size"]:
                return out


def start_hub(root: Path, extra_env: dict[str, str] | None = None) -> Hub:
    server = EvxServer(root, extra_env=extra_env or {})
    server.add_authority(OWNER, "DE", "investigator,auditor")
    server.add_authority(RECIPIENT, "FR", "investigator,auditor")
    server.add_authority(STRANGER, "IT", "investigator,auditor")
    server.add_authority(OPERATOR, "EU", "auditor")
    wanted = {"owner": (OWNER, "investigator", "anna"),
              "recipient": (RECIPIENT, "investigator", "luc"),
              "recipient_auditor": (RECIPIENT, "auditor", "claire"),
              "stranger": (STRANGER, "investigator", "mario"),
              "operator": (OPERATOR, "auditor", "olga")}
    tokens = server.admin_parallel([["token", a, "--sub", s, "--role", r, "--ttl", "3600"]
                                    for a, r, s in wanted.values()])
    server.start()
    return Hub(server, dict(zip(wanted, tokens, strict=True)))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = start_hub(tmp_path)
    try:
        yield h
    finally:
        h.server.stop()
