"""POST /v1/packages/{id}/custody/bundle: the custody bundle under the caller's own policy,
verified before it is sent -- what the custody page's "Download the custody bundle" saves."""

from __future__ import annotations

from custody.bundle import verify_bundle
from custody.cosignature import Cosigner
from custody.policy import Policy
from tests.api.conftest import OWNER, RECIPIENT, STRANGER, World


def _bundle(w: World, package_id: str, policy: str, authority: str = RECIPIENT,
            role: str = "investigator"):
    return w.client.post(f"/v1/packages/{package_id}/custody/bundle", content=policy,
                         headers={**w.headers(authority, role), "Content-Type": "text/plain"})


def test_bundle_under_the_callers_policy_verifies_offline(world: World) -> None:
    package_id = world.sealed_shared_package({"report.pdf": b"%PDF-1.7 evidence"})
    policy = f"log {world.runtime.ledger.verifier_key}\nquorum none\n"

    r = _bundle(world, package_id, policy, RECIPIENT, "auditor")

    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == \
        f'attachment; filename="custody-bundle-{package_id}.json"'
    verified = verify_bundle(r.content, Policy.parse(policy))
    actions = [e.action for e in verified.entries]
    assert actions[:3] == ["package.created", "item.uploaded", "package.sealed"]
    assert "share.created" in actions
    assert world.entries(world.ledger_size() - 1)[0]["action"] == "custody.read"


def test_bundle_refusals_are_problems(world: World) -> None:
    package_id = world.sealed_shared_package()
    key = world.runtime.ledger.verifier_key
    bad = _bundle(world, package_id, "not a policy")
    assert bad.status_code == 422 and bad.json()["type"].endswith("/validation")
    witness = Cosigner.from_seed("w1.example.org", bytes([1]) * 32)
    unmet = _bundle(world, package_id, f"log {key}\nwitness W1 {witness.key}\nquorum W1\n")
    assert unmet.status_code == 409, unmet.text  # no witness cosigns this hub's checkpoints
    assert "no checkpoint of this hub satisfies the policy" in unmet.json()["detail"]
    stranger = _bundle(world, package_id, f"log {key}\nquorum none\n", STRANGER)
    assert stranger.status_code == 404
    assert _bundle(world, package_id, f"log {key}\nquorum none\n", OWNER).status_code == 200
