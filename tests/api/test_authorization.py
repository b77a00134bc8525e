"""The authorization matrix: every endpoint x every kind of caller, with the status each gets,
that refusals leak nothing, that authenticated refusals are on the record and anonymous ones
are not, and that strangers cannot tell an existing package id from a made-up one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.conftest import OPERATOR, OWNER, RECIPIENT, STRANGER, World

SECRET = b"witness statement: name and address of the protected witness"
TITLE = "Phone extraction"

# Callers: (authority, role, share state of the package they act on).
CALLERS = {
    "owner_investigator": (OWNER, "investigator", "active"),
    "owner_auditor": (OWNER, "auditor", "active"),
    "recipient_investigator": (RECIPIENT, "investigator", "active"),
    "recipient_auditor": (RECIPIENT, "auditor", "active"),
    "stranger_investigator": (STRANGER, "investigator", "active"),
    "stranger_auditor": (STRANGER, "auditor", "active"),
    "operator_auditor": (OPERATOR, "auditor", "active"),
    "expired_investigator": (RECIPIENT, "investigator", "expired"),
    "expired_auditor": (RECIPIENT, "auditor", "expired"),
    "revoked_investigator": (RECIPIENT, "investigator", "revoked"),
    "no_token": (None, None, "active"),
}

# endpoint -> expected status per caller
MATRIX: dict[str, dict[str, int]] = {
    "metadata": dict(owner_investigator=200, owner_auditor=200, recipient_investigator=200,
                     recipient_auditor=200, stranger_investigator=404, stranger_auditor=404,
                     operator_auditor=200, expired_investigator=403, expired_auditor=200,
                     revoked_investigator=403, no_token=401),
    "content": dict(owner_investigator=200, owner_auditor=403, recipient_investigator=200,
                    recipient_auditor=403, stranger_investigator=404, stranger_auditor=404,
                    operator_auditor=403, expired_investigator=403, expired_auditor=403,
                    revoked_investigator=403, no_token=401),
    "custody": dict(owner_investigator=200, owner_auditor=200, recipient_investigator=200,
                    recipient_auditor=200, stranger_investigator=404, stranger_auditor=404,
                    operator_auditor=200, expired_investigator=403, expired_auditor=200,
                    revoked_investigator=403, no_token=401),
    "upload": dict(owner_investigator=409, owner_auditor=403, recipient_investigator=403,
                   recipient_auditor=403, stranger_investigator=404, stranger_auditor=404,
                   operator_auditor=403, expired_investigator=403, expired_auditor=403,
                   revoked_investigator=403, no_token=401),
    "seal": dict(owner_investigator=409, owner_auditor=403, recipient_investigator=403,
                 recipient_auditor=403, stranger_investigator=404, stranger_auditor=404,
                 operator_auditor=403, expired_investigator=403, expired_auditor=403,
                 revoked_investigator=403, no_token=401),
    "share": dict(owner_investigator=201, owner_auditor=403, recipient_investigator=403,
                  recipient_auditor=403, stranger_investigator=404, stranger_auditor=404,
                  operator_auditor=403, expired_investigator=403, expired_auditor=403,
                  revoked_investigator=403, no_token=401),
    "revoke": dict(owner_investigator=200, owner_auditor=403, recipient_investigator=403,
                   recipient_auditor=403, stranger_investigator=404, stranger_auditor=404,
                   operator_auditor=403, expired_investigator=403, expired_auditor=403,
                   revoked_investigator=403, no_token=401),
    "ledger_entries": dict(owner_investigator=403, owner_auditor=403,
                           recipient_investigator=403, recipient_auditor=403,
                           stranger_investigator=403, stranger_auditor=403,
                           operator_auditor=200, expired_investigator=403, expired_auditor=403,
                           revoked_investigator=403, no_token=401),
    "ledger_export": dict(owner_investigator=403, owner_auditor=403,
                          recipient_investigator=403, recipient_auditor=403,
                          stranger_investigator=403, stranger_auditor=403,
                          operator_auditor=200, expired_investigator=403, expired_auditor=403,
                          revoked_investigator=403, no_token=401),
    "checkpoint": {c: (401 if c == "no_token" else 200) for c in CALLERS},
    "inclusion_proof": {c: (401 if c == "no_token" else 200) for c in CALLERS},
    "consistency_proof": {c: (401 if c == "no_token" else 200) for c in CALLERS},
}

LISTED = dict(owner_investigator=True, owner_auditor=True, recipient_investigator=True,
              recipient_auditor=True, stranger_investigator=False, stranger_auditor=False,
              operator_auditor=True, expired_investigator=False, expired_auditor=True,
              revoked_investigator=False)


def _package(w: World, share_state: str) -> str:
    expires = None
    if share_state == "expired":
        expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    package_id = w.sealed_shared_package({"statement.txt": SECRET}, expires_at=expires)
    if share_state == "revoked":
        r = w.client.delete(f"/v1/packages/{package_id}/shares/{RECIPIENT}",
                            headers=w.headers(OWNER))
        assert r.status_code == 200
    return package_id


def _call(w: World, endpoint: str, package_id: str, headers: dict[str, str]) -> httpx.Response:
    c = w.client
    base = f"/v1/packages/{package_id}"
    calls: dict[str, Callable[[], httpx.Response]] = {
        "metadata": lambda: c.get(base, headers=headers),
        "content": lambda: c.get(f"{base}/items/statement.txt/content", headers=headers),
        "custody": lambda: c.get(f"{base}/custody", headers=headers),
        "upload": lambda: c.put(f"{base}/items/more.txt", content=b"more", headers=headers),
        "seal": lambda: c.post(f"{base}/seal", headers=headers),
        "share": lambda: c.post(f"{base}/shares", headers=headers, json={
            "authority": STRANGER, "legal_basis": "MLA treaty art. 3",
            "request_reference": "MLA-IT-1"}),
        "revoke": lambda: c.delete(f"{base}/shares/{RECIPIENT}", headers=headers),
        "ledger_entries": lambda: c.get("/v1/ledger/entries", headers=headers),
        "ledger_export": lambda: c.get("/v1/ledger/export", headers=headers),
        "checkpoint": lambda: c.get("/v1/ledger/checkpoint", headers=headers),
        "inclusion_proof": lambda: c.get("/v1/ledger/proofs/inclusion",
                                         params={"index": 0, "tree_size": 2}, headers=headers),
        "consistency_proof": lambda: c.get("/v1/ledger/proofs/consistency",
                                           params={"from": 1, "to": 2}, headers=headers),
    }
    return calls[endpoint]()


@pytest.mark.parametrize("caller", list(CALLERS))
def test_matrix(world: World, caller: str) -> None:
    authority, role, share_state = CALLERS[caller]
    expired = share_state == "expired"
    # A fresh package per endpoint: share and revoke change state.
    for endpoint, expected_by_caller in MATRIX.items():
        package_id = _package(world, share_state)
        if expired:
            later = datetime.now(UTC) + timedelta(days=400)
            world.runtime.gate.clock = lambda: later  # noqa: B023 - time travel, this iteration
        headers = world.headers(authority, role) if authority else {}
        before = world.ledger_size()
        response = _call(world, endpoint, package_id, headers)
        world.runtime.gate.clock = lambda: datetime.now(UTC)
        expected = expected_by_caller[caller]
        assert response.status_code == expected, (endpoint, caller, response.text)
        if expected >= 400:
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["status"] == expected and problem["type"] and problem["title"]
            assert SECRET not in response.content
            assert TITLE.encode() not in response.content
            assert b"Traceback" not in response.content
            entries = world.entries(before)
            if authority is None:
                assert entries == [], "unauthenticated attempts must not reach the ledger"
            else:
                denied = [e for e in entries if e["outcome"] in ("denied", "failed")]
                assert denied, f"{endpoint}/{caller}: the refusal is not on the record"
                assert denied[-1]["actor"]["authority"] == authority
                assert denied[-1]["reason"]
        if caller == "expired_investigator" and expected == 403 and endpoint in (
                "metadata", "content", "custody"):
            assert response.json()["type"].endswith("/share-expired")
        if caller == "revoked_investigator" and expected == 403 and endpoint in (
                "metadata", "content", "custody"):
            assert response.json()["type"].endswith("/share-revoked")
        if endpoint == "content" and expected == 200:
            assert response.content == SECRET


@pytest.mark.parametrize("caller", [c for c in CALLERS if c != "no_token"])
def test_listing_shows_only_visible_packages(world: World, caller: str) -> None:
    authority, role, share_state = CALLERS[caller]
    package_id = _package(world, share_state)
    if share_state == "expired":
        later = datetime.now(UTC) + timedelta(days=400)
        world.runtime.gate.clock = lambda: later
    r = world.client.get("/v1/packages", headers=world.headers(authority, role))
    assert r.status_code == 200
    ids = {p["id"] for p in r.json()["packages"]}
    assert (package_id in ids) is LISTED[caller]
    if authority not in (OWNER, OPERATOR):
        for p in r.json()["packages"]:
            assert p["shares"] is None, "recipients never see the owner's other shares"


def test_strangers_cannot_probe_ids(world: World) -> None:
    package_id = _package(world, "active")
    headers = world.headers(STRANGER)
    made_up = "pkg_" + "0" * 32
    for endpoint in ("metadata", "content", "custody", "upload", "seal", "share", "revoke"):
        real = _call(world, endpoint, package_id, headers)
        fake = _call(world, endpoint, made_up, headers)
        assert real.status_code == fake.status_code == 404, endpoint
        strip = lambda body: {k: v for k, v in body.items() if k not in ("detail", "instance")}  # noqa: E731
        assert strip(real.json()) == strip(fake.json())
        assert real.json()["detail"].replace(package_id, "X") == \
            fake.json()["detail"].replace(made_up, "X")
