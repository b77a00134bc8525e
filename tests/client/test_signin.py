"""`evx login` end to end: a real `evx serve`, a real OpenID provider on loopback (Authlib's
authorization server, tests/support/oidc_provider.py) and `evx` client processes with no token
of their own. The test plays the officer: it approves the device code at the verification URI
over HTTP, or is the browser that follows the redirect to the client's loopback listener.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client.conftest import write_random
from tests.client.harness import EVX, OPERATOR, OWNER, RECIPIENT, EvxServer, User, _base_env
from tests.support.oidc_provider import OpenIDProvider

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

CLIENT_ID = "evx-cli"
PASSWORD = "correct horse battery staple"


@dataclass
class Officer:
    """An officer at their own workstation: their own state directory and no EVX_TOKEN."""

    server: EvxServer
    home: Path
    extra: dict[str, str]

    def env(self) -> dict[str, str]:
        return {**_base_env(), "HOME": str(self.home), "EVX_URL": self.server.url,
                "EVX_STATE_DIR": str(self.home / "state"), **self.extra}

    def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*EVX, *args], env=self.env(), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def session_file(self) -> Path:
        [found] = (self.home / "state" / "sessions").glob("*.json")
        return found

    def session(self) -> dict[str, Any]:
        return json.loads(self.session_file().read_text())

    def login_device(self, provider: OpenIDProvider, username: str, authority: str = RECIPIENT,
                     *, approve: bool = True, expect: int = 0) -> dict[str, Any] | str:
        """`evx login --device`: read the code from its output, approve it as the user would."""
        proc = subprocess.Popen([*EVX, "login", "--authority", authority, "--device", "--json"],
                                env=self.env(), text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            assert proc.stderr is not None
            code = None
            seen = []
            for line in proc.stderr:
                seen.append(line)
                if line.startswith("code: "):
                    code = line.split(":", 1)[1].strip()
                    break
            assert code, "".join(seen)
            provider.approve_device(code, username, PASSWORD, approve=approve)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == expect, (proc.returncode, out, "".join(seen), err)
        return json.loads(out) if expect == 0 else err


@dataclass
class Hub:
    server: EvxServer
    provider: OpenIDProvider
    owner: User  # DE-BKA investigator with a development token (uploads the evidence)
    operator: User  # the operator's auditor (reads the whole ledger)
    root: Path

    def officer(self, name: str, **extra: str) -> Officer:
        return Officer(self.server, self.root / "workstations" / name, extra)

    def ledger(self) -> list[dict[str, Any]]:
        r = httpx.get(self.server.url + "/v1/ledger/entries", params={"limit": 1000},
                      headers={"Authorization": f"Bearer {self.operator.token}"})
        assert r.status_code == 200, r.text
        return [e["entry"] for e in r.json()["entries"]]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("signin")
    provider = OpenIDProvider(audience="evidence-exchange").start()
    provider.add_client(CLIENT_ID)
    provider.add_user("luc.martin", PASSWORD, "investigator")
    provider.add_user("claire.dupont", PASSWORD, "auditor")
    server = EvxServer(root, extra_env={"EVX_TOKEN_LEEWAY_SECONDS": "0",
                                        "EVX_PROVIDER_REFETCH_SECONDS": "1"})
    try:
        # The hub operator's part: the registry, with FR-OCRTEH's identity provider.
        server.add_authority(OWNER, "DE", "investigator,auditor")
        server.add_authority(OPERATOR, "EU", "auditor")
        added = server.admin("authority", "add", RECIPIENT, "--name", "OCRTEH", "--country",
                             "FR", "--roles", "investigator,auditor", "--issuer",
                             provider.issuer, "--client-id", CLIENT_ID)
        assert f"trusting key {provider.kid}" in added, added
        owner = server.user(OWNER, "investigator", "anna.schmidt")
        operator = server.user(OPERATOR, "auditor", "olga.berg")
        server.start()
        yield Hub(server, provider, owner, operator, root)
    finally:
        server.stop()
        provider.stop()


def _shared_package(hub: Hub, tmp_path: Path, sizes: list[int]) -> str:
    package = hub.owner.run("package", "create", "--case-ref", "BKA-2026-17", "--title",
                            "Seized handset", "-q").stdout.strip()
    for i, size in enumerate(sizes):
        write_random(tmp_path / "evidence" / f"part-{i}.bin", size)
    hub.owner.run("upload", package, str(tmp_path / "evidence"))
    hub.owner.run("seal", package)
    hub.owner.run("share", package, "--authority", RECIPIENT, "--legal-basis",
                  "EIO Directive 2014/41/EU", "--request-ref", "MLA-FR-2026-0042")
    return package


def test_provider_keys_are_on_the_record(hub: Hub) -> None:
    added = [e for e in hub.ledger() if e["action"] == "authority.key_added"
             and e["details"]["authority"] == RECIPIENT]
    assert [(e["details"]["kid"], e["details"]["source"], e["details"]["issuer"])
            for e in added] == [(hub.provider.kid, "jwks", hub.provider.issuer)]
    assert added[0]["details"]["thumbprint"] == hub.provider.signing_key.thumbprint()
    assert added[0]["details"]["jwks_uri"] == hub.provider.issuer + "/jwks"


def test_device_flow_then_work_without_a_token(hub: Hub, tmp_path: Path) -> None:
    package = _shared_package(hub, tmp_path, [20_000])
    luc = hub.officer("luc-device")
    luc.run("package", "list", expect=3)  # not signed in: authentication, exit 3

    signed = luc.login_device(hub.provider, "luc.martin")
    assert isinstance(signed, dict)
    assert (signed["authority"], signed["subject"], signed["role"], signed["method"]) == (
        RECIPIENT, "luc.martin", "investigator", "device")
    if os.name == "posix":
        assert stat.S_IMODE(luc.session_file().stat().st_mode) == 0o600

    listed = json.loads(luc.run("package", "list", "--json").stdout)["packages"]
    assert package in [p["id"] for p in listed]
    directory = json.loads(luc.run("authorities", "--json").stdout)["authorities"]
    assert {a["id"] for a in directory} == {OWNER, RECIPIENT, OPERATOR}
    # EVX_TOKEN, when set, wins over the session (scripts keep working as they did).
    scripted = Officer(hub.server, luc.home, {"EVX_TOKEN": hub.owner.token})
    owned = json.loads(scripted.run("package", "list", "--json").stdout)["packages"]
    assert {p["owner_authority"] for p in owned} == {OWNER}
    # A mistyped recipient is caught against the directory before anything is shared.
    typo = hub.owner.run("share", package, "--authority", "FR-OCRTE", "--legal-basis", "x",
                         "--request-ref", "y", expect=2)
    assert "Did you mean FR-OCRTEH?" in typo.stderr
    # Shell completion of --authority comes from the same directory.
    from types import SimpleNamespace

    from evx.cli.signin import complete_authority

    context = SimpleNamespace(params={"url": hub.server.url, "token": hub.owner.token})
    assert complete_authority(context, "fr") == [RECIPIENT]  # type: ignore[arg-type]
    # The ledger names the officer as the provider identified them.
    reads = [e for e in hub.ledger() if e["action"] == "package.listed"
             and e["actor"]["subject"] == "luc.martin"]
    assert reads and reads[-1]["actor"] == {"authority": RECIPIENT, "subject": "luc.martin",
                                            "role": "investigator"}

    denied = luc.login_device(hub.provider, "luc.martin", approve=False, expect=3)
    assert "denied" in str(denied) and "Traceback" not in str(denied)


def test_browser_flow_with_pkce_and_loopback_redirect(hub: Hub, tmp_path: Path) -> None:
    # The test is the browser: $BROWSER follows the authorization URL, signs in at the
    # provider and follows its redirect to evx's loopback listener.
    bot = tmp_path / "browser"
    bot.write_text(f"#!{sys.executable}\nimport runpy, sys\n"
                   "sys.argv = ['oidc_provider', sys.argv[1]]\n"
                   "runpy.run_module('tests.support.oidc_provider', run_name='__main__')\n")
    bot.chmod(0o755)
    claire = hub.officer("claire-browser", BROWSER=str(bot), IDP_TEST_USER="claire.dupont",
                         IDP_TEST_PASSWORD=PASSWORD)
    signed = json.loads(claire.run("login", "--authority", RECIPIENT, "--browser",
                                   "--json").stdout)
    assert (signed["subject"], signed["role"], signed["method"]) == (
        "claire.dupont", "auditor", "browser")
    directory = claire.run("authorities").stdout
    assert "FR-OCRTEH" in directory and "OCRTEH" in directory
    # The provider requires PKCE (CodeChallenge(required=True)): the sign-in above could only
    # succeed with an S256 challenge at /authorize and its verifier at /token.
    assert "/authorize" in hub.provider.requests


def test_refresh_during_a_long_download(hub: Hub, tmp_path: Path) -> None:
    hub.provider.access_token_seconds = 4
    try:
        package = _shared_package(hub, tmp_path, [150_000, 150_000, 150_000])
        luc = hub.officer("luc-long-download")
        luc.login_device(hub.provider, "luc.martin")
        first = luc.session()
        refreshes = hub.provider.refreshes
        started = time.monotonic()
        # ~100 KB/s, one item at a time (downloads run 4 at a time by default): each item takes
        # about 1.5 s, the whole download outlives the 4 s token.
        luc.run("download", package, "-o", str(tmp_path / "received"), "--limit-rate",
                "100000", "--parallel", "1")
        assert time.monotonic() - started > 4
        for i in range(3):
            assert (tmp_path / "received" / f"evidence/part-{i}.bin").read_bytes() == (
                tmp_path / "evidence" / f"part-{i}.bin").read_bytes()
        assert hub.provider.refreshes > refreshes
        renewed = luc.session()
        assert renewed["access_token"] != first["access_token"]
        assert renewed["refresh_token"] != first["refresh_token"]  # rotated by the provider
        completed = [e for e in hub.ledger() if e["action"] == "download.completed"
                     and e["package"] == package]
        assert len(completed) == 3
    finally:
        hub.provider.access_token_seconds = 300


def test_revoked_refresh_token_exits_3(hub: Hub) -> None:
    hub.provider.access_token_seconds = 2
    try:
        luc = hub.officer("luc-revoked")
        luc.login_device(hub.provider, "luc.martin")
        hub.provider.revoke(luc.session()["refresh_token"], CLIENT_ID)
        time.sleep(2.5)  # the access token expires; renewing it is refused
        failed = luc.run("package", "list", expect=3)
        assert "sign-in has ended" in failed.stderr and "evx login" in failed.stderr
        assert "Traceback" not in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 2  # the error and what to do
        again = luc.run("package", "list", "--json", expect=3)
        assert json.loads(again.stdout)["exit_code"] == 3
        assert not list((luc.home / "state" / "sessions").glob("*.json"))  # forgotten
    finally:
        hub.provider.access_token_seconds = 300


def test_key_rotation_at_the_provider_is_followed_on_the_record(hub: Hub) -> None:
    old_kid = hub.provider.kid
    new_kid = hub.provider.rotate_key(keep_previous=False)
    time.sleep(1.1)  # EVX_PROVIDER_REFETCH_SECONDS=1: the next unknown kid may refetch
    luc = hub.officer("luc-after-rotation")
    luc.login_device(hub.provider, "luc.martin")  # its token names the new kid
    luc.run("package", "list")

    entries = hub.ledger()
    added = [e for e in entries if e["action"] == "authority.key_added"
             and e["details"]["kid"] == new_kid]
    assert len(added) == 1
    assert added[0]["details"]["thumbprint"] == hub.provider.signing_key.thumbprint()
    assert (added[0]["details"]["source"], added[0]["actor"]["subject"],
            added[0]["actor"]["role"]) == ("jwks", "identity-provider-sync", "system")
    retired = [e for e in entries if e["action"] == "authority.key_retired"
               and e["details"]["kid"] == old_kid]
    assert len(retired) == 1 and "no longer published" in retired[0]["details"]["why"]
    # A token signed with the withdrawn key is refused from now on.
    shown = json.loads(hub.server.admin("authority", "show", RECIPIENT, "--json"))
    assert {k["kid"]: k["status"] for k in shown["keys"]} == {old_kid: "retired",
                                                              new_kid: "active"}
