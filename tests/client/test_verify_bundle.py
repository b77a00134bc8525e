"""`evx verify-bundle` on the committed test vector: exit 0 and the timeline; a tampered bundle
exits 1 with the reason; a bad policy file is a usage error (2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.client.harness import EVX, _base_env
from tests.custody.bundle_vector import BUNDLE_FILE, POLICY_FILE

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes


def evx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EVX, *args], env=_base_env(), capture_output=True, text=True,
                          timeout=120)


def test_verify_bundle_exit_codes(tmp_path: Path) -> None:
    ok = evx("verify-bundle", str(BUNDLE_FILE), "--policy", str(POLICY_FILE), "--json")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["package"] == "pkg-x" and len(result["entries"]) == 7
    assert result["cosigned_by"] == {"DE-BKA": 1767225602, "FR-PJ": 1767225600}

    human = evx("verify-bundle", str(BUNDLE_FILE), "--policy", str(POLICY_FILE))
    assert human.returncode == 0 and "VERIFIED 7 entries of pkg-x" in human.stdout

    tampered = tmp_path / "bundle.json"
    bundle = json.loads(BUNDLE_FILE.read_text())
    bundle["manifest"]["items"][1]["size"] = 13
    tampered.write_text(json.dumps(bundle))
    bad = evx("verify-bundle", str(tampered), "--policy", str(POLICY_FILE), "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["check"] == "ManifestMismatch"
    assert "the seal entry records" in bad.stderr

    policy = tmp_path / "policy"
    policy.write_text("quorum nobody\n")
    assert evx("verify-bundle", str(BUNDLE_FILE), "--policy", str(policy)).returncode == 2
