"""tests for service/identity/endpoints.py: the partner directory and sign-in discovery."""

from __future__ import annotations

from tests.api.conftest import OPERATOR, OWNER, RECIPIENT, STRANGER, World


def test_any_signed_in_officer_reads_the_directory(world: World) -> None:
    for caller in [(STRANGER, "investigator"), (OPERATOR, "auditor"), (RECIPIENT, "auditor")]:
        r = world.client.get("/v1/authorities", headers=world.headers(*caller))
        assert r.status_code == 200, r.text
        listed = r.json()["authorities"]
        assert [a["id"] for a in listed] == sorted([OWNER, RECIPIENT, STRANGER, OPERATOR])
        assert listed[[a["id"] for a in listed].index(RECIPIENT)] == {
            "id": RECIPIENT, "name": "OCRTEH", "country": "FR",
            "roles": ["auditor", "investigator"]}
        assert set(listed[0]) == {"id", "name", "country", "roles"}  # no keys, no issuers


def test_the_directory_needs_a_token(world: World) -> None:
    r = world.client.get("/v1/authorities")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")


def test_sign_in_discovery_is_public_and_says_where(world: World) -> None:
    with world.runtime.engine.begin() as conn:
        from service.identity.registry import TrustRegistry

        TrustRegistry(conn).set_identity_provider(
            RECIPIENT, issuer="https://idp.ocrteh.example/realms/police", client_id="evx-cli")
    r = world.client.get(f"/v1/authorities/{RECIPIENT}/sign-in")
    assert r.status_code == 200, r.text
    assert r.json() == {"authority": RECIPIENT, "issuer": "https://idp.ocrteh.example/realms/police",
                        "client_id": "evx-cli", "audience": world.settings.audience}
    r = world.client.get(f"/v1/authorities/{OWNER}/sign-in")  # keys only, no provider
    assert r.status_code == 404 and "no identity provider" in r.json()["detail"]
    r = world.client.get("/v1/authorities/XX-NOPE/sign-in")
    assert r.status_code == 404 and "No authority XX-NOPE" in r.json()["detail"]
    assert world.client.get("/v1/authorities/not%20an%20id/sign-in").status_code == 422

