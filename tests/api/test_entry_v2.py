"""Entry version 2: every officer's entry names the token's issuer key (kid, RFC 7638
thumbprint) and token id; system entries name none."""

from __future__ import annotations

import base64
import json

import sqlalchemy as sa

from custody.entry import Entry
from custody.rules import check_package_rules
from service.identity.keys import jwk_thumbprint
from service.identity.tables import authority_keys
from tests.api.conftest import OWNER, RECIPIENT, World


def _jws_header(token: str) -> dict:
    segment = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def _jti(token: str) -> str:
    segment = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))["jti"])


def test_officer_entries_record_kid_thumbprint_and_jti(world: World) -> None:
    start = world.ledger_size()
    package_id = world.sealed_shared_package()
    r = world.client.get(f"/v1/packages/{package_id}/items/report.pdf/content",
                         headers=world.headers(RECIPIENT))
    assert r.status_code == 200
    entries = world.entries(start)
    assert entries and all(e["v"] == 2 for e in entries)
    with world.runtime.engine.connect() as conn:
        jwks = {
            row.kid: json.loads(row.public_jwk) for row in conn.execute(sa.select(authority_keys))
        }
    for entry in entries:
        token = world.tokens[(entry["actor"]["authority"], entry["actor"]["role"])]
        kid = _jws_header(token)["kid"]
        assert entry["token"] == {
            "kid": kid,
            "jkt": jwk_thumbprint(jwks[kid]),
            "jti": _jti(token),
        }, entry
    actions = [e["action"] for e in entries]
    assert {"package.created", "item.uploaded", "package.sealed", "share.created",
            "download.started", "download.completed"} <= set(actions)
    # the service's own history keeps every rule of the exchange
    ours = [Entry.from_dict(e) for e in world.entries(0) if e["package"] == package_id]
    assert check_package_rules(ours) == []
    assert {e.actor.authority for e in ours} == {OWNER, RECIPIENT}
