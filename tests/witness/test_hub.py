"""The hub gathers cosignatures from three real `evx witness serve` processes; clients hold a
2-of-3 policy. Normal operation, one witness down, a witness restarted, and a forked history
that cannot get a quorum."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from custody.note import VerifierKey
from custody.policy import Policy, QuorumNotMet, WitnessedCheckpoint
from evx.witness.state import WitnessStore
from tests.client.harness import OPERATOR, OWNER, EvxServer, User
from tests.client.rewrite import rewrite_entry
from tests.witness.harness import WitnessProcess

T = TypeVar("T")
WAIT_S = 30.0

pytestmark = pytest.mark.slow


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Federation:
    hub: EvxServer
    witnesses: list[WitnessProcess]
    log_key: VerifierKey
    policy: Policy
    investigator: User
    monitor: User
    root: Path

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.hub.url + path, timeout=10,
                         headers={"Authorization": f"Bearer {self.monitor.token}"})

    def tree_size(self) -> int:
        return int(self.get("/v1/ledger/entries?limit=1").json()["tree_size"])

    def served(self) -> str:
        response = self.get("/v1/ledger/checkpoint")
        assert response.status_code == 200, response.text
        return response.text

    def accepted(self, at_least: int, cosigners: int) -> WitnessedCheckpoint:
        """Wait until the served checkpoint covers ``at_least`` entries with ``cosigners``
        cosignatures that the 2-of-3 policy accepts."""
        def probe() -> WitnessedCheckpoint | None:
            try:
                got = self.policy.verify_checkpoint(self.served())
            except QuorumNotMet:
                return None
            ok = got.checkpoint.size >= at_least and len(got.cosigned) >= cosigners
            return got if ok else None
        return wait_for(f"a checkpoint of >= {at_least} entries with {cosigners} cosignatures",
                        probe)

    def activity(self, tag: str) -> str:
        package = self.investigator.json("package", "create", "--case-ref", f"CASE-{tag}",
                                         "--title", "Seized phone")["id"]
        evidence = self.root / tag / "notes.txt"
        evidence.parent.mkdir(parents=True)
        evidence.write_text(f"{tag}\n")
        self.investigator.run("upload", package, str(evidence))
        return package


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """One hub and three witnesses for the module (starting them costs a minute on a busy
    machine). The fork test runs last: it rewrites the hub's history."""
    tmp_path = tmp_path_factory.mktemp("federation")
    hub = EvxServer(tmp_path / "hub")
    hub.root.mkdir()
    log_key = VerifierKey.parse(hub.admin("ledger", "verifier-key", "--create"))
    witnesses = [WitnessProcess(tmp_path / f"w{i}", f"witness{i}.test/evx", [log_key])
                 for i in (1, 2, 3)]
    try:
        for w in witnesses:
            w.start()
        hub.extra_env.update({
            "EVX_WITNESSES": "; ".join(f"W{i} {w.key} {w.url}"
                                       for i, w in enumerate(witnesses, start=1)),
            "EVX_WITNESS_INTERVAL_SECONDS": "0.2",
            "EVX_WITNESS_TIMEOUT_SECONDS": "3",
            "EVX_WITNESS_MAX_ATTEMPTS": "3",
        })
        hub.add_authority(OWNER, "DE", "investigator,auditor")
        hub.add_authority(OPERATOR, "EU", "auditor")
        investigator, monitor = hub.users([(OWNER, "investigator", "anna.schmidt"),
                                           (OPERATOR, "auditor", "olga.operator")])
        hub.start()
        policy = Policy.parse(
            f"log {log_key}\n"
            + "".join(f"witness W{i} {w.key} {w.url}\n" for i, w in enumerate(witnesses, 1))
            + "group partners 2 W1 W2 W3\nquorum partners\n")
        (tmp_path / "policy").write_text(policy.text)
        yield Federation(hub, witnesses, log_key, policy, investigator, monitor, tmp_path)
    finally:
        hub.stop()
        for w in witnesses:
            w.stop()


def witness_status(fed: Federation) -> dict[str, Any]:
    response = httpx.get(fed.hub.url + "/readyz", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["witnesses"]


def test_cosignatures_quorum_outage_restart(federation: Federation) -> None:
    fed = federation
    first = fed.activity("one")
    size = fed.tree_size()
    got = fed.accepted(size, 3)
    assert set(got.cosigned) == {"W1", "W2", "W3"}
    note = fed.served()
    assert note.count("\n\u2014 ") == 4  # the log's signature and three cosignatures
    downloaded = fed.investigator.json("download", first, "-o", str(fed.root / "received"),
                                       "--policy", str(fed.root / "policy"))
    assert downloaded["witnesses"]["quorum"] == "2 of W1, W2, W3"
    synced = fed.monitor.json("ledger", "sync", "--policy", str(fed.root / "policy"))
    assert synced["witnesses"]["quorum"] == "2 of W1, W2, W3"
    assert len(synced["witnesses"]["cosigned_by"]) >= 2
    export = fed.root / "ledger.jsonl"
    fed.monitor.run("ledger", "export", "-o", str(export), "--policy", str(fed.root / "policy"))
    offline = fed.monitor.json("ledger", "verify", str(export), "--policy",
                               str(fed.root / "policy"))
    assert offline["witnesses"]["quorum"] == "2 of W1, W2, W3"
    assert len(offline["witnesses"]["cosigned_by"]) >= 2
    # Without the witnessed export, the fresh checkpoint has no cosignature: refused.
    bare = fed.root / "bare.jsonl"
    fed.monitor.run("ledger", "export", "-o", str(bare))
    fed.monitor.run("ledger", "verify", str(bare), "--policy", str(fed.root / "policy"),
                    expect=1)
    wait_for("no lag", lambda: all(s["lag_entries"] == 0 for s in witness_status(fed).values())
             or None)
    metrics = httpx.get(fed.hub.url + "/metrics", timeout=10).text
    assert 'evx_witness_lag_entries{witness="W1"} 0.0' in metrics
    assert 'evx_witness_submissions_total{outcome="cosigned",witness="W2"}' in metrics

    # One witness down: the hub keeps serving, with a quorum of two.
    down = fed.witnesses[2]
    down_size = WitnessStore(down.db).latest(fed.log_key.name).state.size
    down.stop()
    package = fed.activity("two")
    size = fed.tree_size()
    got = fed.accepted(size, 2)
    assert set(got.cosigned) == {"W1", "W2"}
    custody = fed.monitor.run("custody", package, "--policy", str(fed.root / "policy"))
    assert "cosigned by W1, W2 (policy: 2 of W1, W2, W3)" in custody.stdout + custody.stderr
    status = wait_for("W3 reported lagging",
                      lambda: (s := witness_status(fed))["W3"]["lag_entries"] > 0
                      and s["W3"]["last_error"] and s)
    assert status["W3"]["last_error"].startswith("unreachable")
    assert status["W1"]["lag_entries"] <= fed.tree_size() - size + 2

    # Restarted, it kept its state: the hub catches it up from the size it had, with a
    # consistency proof (a witness that forgot would accept old size 0 instead).
    assert WitnessStore(down.db).latest(fed.log_key.name).state.size == down_size
    down.start()
    got = fed.accepted(fed.tree_size(), 3)
    assert "W3" in got.cosigned
    assert WitnessStore(down.db).latest(fed.log_key.name).state.size > down_size
    assert WitnessStore(down.db).refusals(fed.log_key.name) == []


def test_forked_history_gets_no_quorum(federation: Federation) -> None:
    fed = federation
    package = fed.activity("before")
    honest = fed.accepted(fed.tree_size(), 3)
    policy = str(fed.root / "policy")
    witnessed_client = fed.hub.user(OPERATOR, "auditor", "hanna.witnessed")
    witnessed_client.run("ledger", "sync", "--policy", policy)
    key_only_client = fed.hub.user(OPERATOR, "auditor", "karl.keyonly")
    fresh_client = fed.hub.user(OPERATOR, "auditor", "fritz.fresh")

    # The operator rewrites history (an entry changed, everything after re-chained, nodes
    # rebuilt, checkpoints and the cosignatures it held deleted) and the hub re-signs it with
    # the real log key.
    fed.hub.stop()
    db = fed.hub.data_dir / "evidence.db"
    honest_files = {p.name: p.read_bytes() for p in fed.hub.data_dir.glob("evidence.db*")}

    def forge(entry: dict[str, Any]) -> None:
        entry["actor"]["subject"] = "someone.else"

    first_of_package = 0
    rewrite_entry(db, first_of_package, forge)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM witness_cosignatures")
    conn.close()
    fed.hub.start()
    fed.activity("after")
    forked_size = fed.tree_size()

    # Every witness refuses the fork (422, kept as evidence); the hub cannot gather a quorum.
    def all_refused() -> bool | None:
        return all(WitnessStore(w.db).refusals(fed.log_key.name) for w in fed.witnesses) or None
    wait_for("every witness refusing the fork", all_refused)
    served = fed.served()
    with pytest.raises(QuorumNotMet) as refused:
        fed.policy.verify_checkpoint(served)
    assert refused.value.cosigned == ()
    for w in fed.witnesses:
        kept = WitnessStore(w.db).latest(fed.log_key.name)
        assert kept.state.size == honest.checkpoint.size
        assert kept.state.root == honest.checkpoint.root
    status = witness_status(fed)
    assert all(s["last_error"] and s["last_error"].startswith("422") for s in status.values())
    assert all(s["lag_entries"] >= forked_size - honest.checkpoint.size
               for s in status.values())

    # Clients: the one that accepted the witnessed history refuses the fork; a client new to
    # the hub refuses it too (no quorum), naming who cosigned: nobody.
    refused_sync = witnessed_client.run("ledger", "sync", "--policy", policy, "--json",
                                        "--witness-wait", "2", expect=1)
    assert json.loads(refused_sync.stdout)["error"] == "quorum-not-met"
    fresh = fresh_client.run("custody", package, "--policy", policy, "--json",
                             "--witness-wait", "2", expect=1)
    assert json.loads(fresh.stdout)["error"] == "quorum-not-met"
    assert json.loads(fresh.stdout)["cosigned_by"] == []
    # A client trusting the log key alone accepts the fork ...
    key_only_client.run("ledger", "sync")
    # ... and when the hub shows the honest history again, that client sees the split (exit 1).
    fed.hub.stop()
    for p in fed.hub.data_dir.glob("evidence.db*"):
        p.unlink()
    for name, data in honest_files.items():
        (fed.hub.data_dir / name).write_bytes(data)
    fed.hub.start()
    split = key_only_client.run("ledger", "sync", "--json", expect=1)
    assert json.loads(split.stdout)["error"] == "ledger-inconsistent"
    witnessed_client.run("ledger", "sync", "--policy", policy)


def test_bundle_outlives_the_hub(federation: Federation, tmp_path: Path) -> None:
    """Runs last: a custody bundle and its PDF made on the running hub verify after the hub,
    the witnesses and all their data are gone."""
    import shutil
    import subprocess

    from PIL import Image

    fed = federation
    package = fed.activity("court")
    fed.investigator.run("seal", package)
    fed.accepted(fed.tree_size(), 2)
    bundle, report = tmp_path / "custody.json", tmp_path / "custody.pdf"
    made = fed.monitor.json("custody", package, "--policy", str(fed.root / "policy"),
                            "--bundle", str(bundle), "--report", str(report))
    assert made["bundle"] == str(bundle) and made["report"] == str(report)
    policy = tmp_path / "policy"
    shutil.copy(fed.root / "policy", policy)

    fed.hub.stop()
    for w in fed.witnesses:
        w.stop()
    shutil.rmtree(fed.hub.data_dir)
    for w in fed.witnesses:
        shutil.rmtree(w.root)

    offline = fed.monitor.json("verify-bundle", str(bundle), "--policy", str(policy))
    actions = [e["action"] for e in offline["entries"]]
    assert actions[0] == "package.created"
    assert {"item.uploaded", "package.sealed", "custody.read"} <= set(actions)
    assert offline["entries"][0]["package"] == package
    assert len(offline["cosigned_by"]) >= 2 and offline["quorum"] == "2 of W1, W2, W3"
    assert [i["name"] for i in offline["manifest"]["items"]] == ["notes.txt"]
    assert offline["violations"] == []

    # The same bundle with the quorum lowered in its policy: refused, with the reason.
    weakened = tmp_path / "weakened.json"
    weakened.write_text(bundle.read_text().replace("group partners 2", "group partners 1"))
    refused = fed.monitor.run("verify-bundle", str(weakened), "--policy", str(policy),
                              "--json", expect=1)
    assert json.loads(refused.stdout)["check"] == "PolicyMismatch"

    # The PDF opens, shows the timeline, and carries the bundle.
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(report),
                    str(tmp_path / "page")], check=True, timeout=60)
    image = Image.open(tmp_path / "page-1.png").convert("L")
    dark = sum(image.histogram()[:128])
    assert dark > 1000, "the rendered page is blank"
    text = subprocess.run(["pdftotext", "-layout", str(report), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout
    assert f"Chain of custody of package {package}" in text
    assert "package.created" in text and "item.uploaded" in text
    assert "the policy requires 2 of W1, W2, W3" in text
    subprocess.run(["pdfdetach", "-saveall", "-o", str(tmp_path), str(report)], check=True,
                   timeout=60)
    assert (tmp_path / "custody-bundle.json").read_bytes() == bundle.read_bytes()
