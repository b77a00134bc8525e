"""The recipient's side: the output folder is the client's own (review M2), the download record
beside the files (manifest, custody, SHA256SUMS for the real `sha256sum -c`), `evx verify DIR`
offline on a good and a tampered folder, and the verification on the record."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.client.conftest import World
from tests.client.harness import RECIPIENT

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

FILES = {"a/b.txt": b"bee\n", "aux.txt": b"7 bytes", "two\nlines.txt": b"newline in name\n",
         "back\\slash.txt": b"backslash\n"}


def _shared(world: World, tmp_path: Path, extra: dict[str, bytes] | None = None) -> str:
    de = world.investigator
    src = tmp_path / "src"
    for name, data in {**FILES, **(extra or {})}.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    package = de.json("package", "create", "--case-ref", "M2", "--title", "m2")["id"]
    de.json("upload", package, *[str(p) for p in sorted(src.iterdir())])
    de.json("seal", package)
    de.json("share", package, "--authority", RECIPIENT, "--legal-basis", "EIO",
            "--request-ref", "R")
    return package


def test_symlinked_directory_in_output_is_not_followed(world: World, tmp_path: Path) -> None:
    """M2 (a): a link planted for an intermediate directory made the client write outside -o."""
    package = _shared(world, tmp_path)
    out, victim = tmp_path / "dlA", tmp_path / "victimA"
    out.mkdir()
    victim.mkdir()
    os.symlink(victim, out / "a")
    refused = world.recipient.run("download", package, "a/b.txt", "-o", str(out), expect=2)
    assert "symbolic link" in refused.stderr and "did not create" in refused.stderr
    assert list(victim.iterdir()) == []


def test_symlinked_partial_file_is_not_followed(world: World, tmp_path: Path) -> None:
    """M2 (b) and (c): a partial file planted as a link to an existing file (truncated it) or
    to a missing one (created it, and the verified file became a link to it)."""
    package = _shared(world, tmp_path)
    fr = world.recipient
    from evx.client.outdir import OutputFolder

    key = OutputFolder.partial_key("aux.txt").decode()
    for case, existing in (("b", True), ("c", False)):
        out, victim = tmp_path / f"dl{case}", tmp_path / f"victim{case}"
        (out / ".evx-partial").mkdir(parents=True)
        victim.mkdir()
        target = victim / "important.txt"
        if existing:
            target.write_text("IMPORTANT USER DATA that must not change")
        os.symlink(target, out / ".evx-partial" / key)
        refused = fr.run("download", package, "aux.txt", "-o", str(out), expect=2)
        assert "not a partial file evx made" in refused.stderr
        if existing:
            assert target.read_text() == "IMPORTANT USER DATA that must not change"
        else:
            assert not target.exists()
        assert not (out / "aux.txt").exists() and not (out / "aux.txt").is_symlink()
    # The partial folder itself as a link is refused too.
    out = tmp_path / "dl-pdir"
    out.mkdir()
    os.symlink(tmp_path / "victimb", out / ".evx-partial")
    fr.run("download", package, "aux.txt", "-o", str(out), expect=2)
    assert sorted(p.name for p in (tmp_path / "victimb").iterdir()) == ["important.txt"]


def test_existing_different_file_is_never_replaced(world: World, tmp_path: Path) -> None:
    package = _shared(world, tmp_path)
    out = tmp_path / "dl"
    out.mkdir()
    (out / "aux.txt").write_bytes(b"mine")
    refused = world.recipient.run("download", package, "aux.txt", "-o", str(out), expect=2)
    assert "already exists and is not this item" in refused.stderr
    assert (out / "aux.txt").read_bytes() == b"mine"
    os.unlink(out / "aux.txt")
    os.symlink(tmp_path / "nowhere", out / "aux.txt")
    world.recipient.run("download", package, "aux.txt", "-o", str(out), expect=2)
    assert not (tmp_path / "nowhere").exists()


def test_download_record_sha256sums_verify_and_receipt(world: World, tmp_path: Path) -> None:
    package = _shared(world, tmp_path, extra={".evx": b"an item named like our folder\n"})
    fr = world.recipient
    out = tmp_path / "received"
    got = fr.json("download", package, "-o", str(out))
    assert got["matches_seal"] is True and got["mapped"] == 1
    record = out / ".evx" / package
    manifest = json.loads((record / "manifest.json").read_text())
    by_name = {i["name"]: i for i in manifest["items"]}
    assert set(by_name) == {*FILES, ".evx"}
    assert by_name[".evx"]["local"] == "_.evx"  # mapped: the record's folder is ours
    assert (out / "_.evx").read_bytes() == b"an item named like our folder\n"
    for name, data in FILES.items():
        assert by_name[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert (out / name).read_bytes() == data
    assert manifest["manifest_sha256"] == manifest["sealed_manifest_sha256"]
    custody = json.loads((record / "custody.json").read_text())
    assert custody["log_key"] and custody["pages"][0]["checkpoint"]

    # The real sha256sum -c, names with a newline and a backslash included.
    check = subprocess.run(["sha256sum", "-c", f".evx/{package}/SHA256SUMS"], cwd=out,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(FILES) + 1

    # The recipient's verification is on the record, with the manifest hash it computed.
    entries = world.owner_auditor.json("custody", package)["entries"]
    verified = [e for e in entries if e["action"] == "download.verified"]
    assert [(e["actor"]["authority"], e["details"]["manifest_sha256"],
             e["details"]["matches_seal"]) for e in verified] == [
        (RECIPIENT, manifest["manifest_sha256"], True)]

    # evx verify DIR: offline (no server URL works), good, then tampered.
    offline = {"EVX_URL": "http://127.0.0.1:9"}
    good = subprocess.run([*_evx(), "verify", str(out), "--json"], capture_output=True,
                          text=True, env={**fr.env(), **offline})
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["items_checked"] == len(FILES) + 1
    (out / "aux.txt").write_bytes(b"7 bytez")
    bad = subprocess.run([*_evx(), "verify", str(out), "--json"], capture_output=True,
                         text=True, env={**fr.env(), **offline})
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert [(p["problem"], p["item"]) for p in report["problems"]] == [("changed", "aux.txt")]
    check = subprocess.run(["sha256sum", "-c", "--quiet", f".evx/{package}/SHA256SUMS"],
                           cwd=out, capture_output=True, text=True)
    assert check.returncode == 1 and "aux.txt: FAILED" in check.stdout
    os.unlink(out / "a" / "b.txt")
    (out / "extra.bin").write_bytes(b"x")
    bad = subprocess.run([*_evx(), "verify", str(out), "--json"], capture_output=True,
                         text=True, env={**fr.env(), **offline})
    problems = {(p["problem"], p["item"]) for p in json.loads(bad.stdout)["problems"]}
    assert problems == {("changed", "aux.txt"), ("missing", "a/b.txt"), ("extra", "extra.bin")}
    # A tampered custody record fails too.
    (out / "aux.txt").write_bytes(b"7 bytes")
    os.unlink(out / "extra.bin")
    (out / "a" / "b.txt").write_bytes(b"bee\n")
    assert subprocess.run([*_evx(), "verify", str(out)], env={**fr.env(), **offline},
                          capture_output=True).returncode == 0
    text = (record / "custody.json").read_text()
    (record / "custody.json").write_text(text.replace('"package.sealed"', '"package.read"', 1))
    tampered = subprocess.run([*_evx(), "verify", str(out), "--json"], capture_output=True,
                              text=True, env={**fr.env(), **offline})
    assert tampered.returncode == 1
    assert {p["problem"] for p in json.loads(tampered.stdout)["problems"]} == {"custody"}


def test_verify_takes_the_pinned_log_key_not_the_records(world: World, tmp_path: Path) -> None:
    """A record re-signed under a key of the recorder's own (what a hub forging a folder would
    do) verifies only under that key: evx verify refuses it where this machine pinned the hub's
    key or was given it, and says it trusted the record's own key where it has neither."""
    from custody.note import Signer, parse_note, sign_note

    package = _shared(world, tmp_path)
    fr = world.recipient
    out = tmp_path / "dl"
    fr.json("download", package, "-o", str(out))
    record = out / ".evx" / package / "custody.json"
    genuine = json.loads(record.read_text())
    real_key = genuine["log_key"]
    forger = Signer.generate(real_key.split("+", 1)[0])  # the same name, another key
    forged = {**genuine, "log_key": str(forger.verifier_key), "pages": [
        {**page, "verifier_key": str(forger.verifier_key),
         "checkpoint": sign_note(parse_note(page["checkpoint"]).text, forger)}
        for page in genuine["pages"]]}
    record.write_text(json.dumps(forged))
    offline = {"EVX_URL": "http://127.0.0.1:9"}
    unpinned = {**offline, "EVX_STATE_DIR": str(tmp_path / "fresh-state")}

    def verify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_evx(), "verify", str(out), *args], capture_output=True,
                              text=True, env={**fr.env(), **env})

    # fr's machine pinned the hub's key when it downloaded: the forged record is a difference.
    pinned = verify(offline, "--json")
    assert pinned.returncode == 1, pinned.stderr
    problems = json.loads(pinned.stdout)["problems"]
    assert [p["problem"] for p in problems] == ["custody"]
    assert f"not the pinned key {real_key.split('+')[0]}+{real_key.split('+')[1]}" in (
        problems[0]["detail"])
    # The key given for the run, on a machine with nothing pinned: refused too.
    given = verify(unpinned, "--json", "--log-key", real_key)
    assert given.returncode == 1
    assert [p["problem"] for p in json.loads(given.stdout)["problems"]] == ["custody"]
    # Nothing pinned, nothing given: only the record's own key is there, and evx verify says so.
    alone = verify(unpinned, "--json")
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["log_keys"][package] == {
        "key": str(forger.verifier_key), "source": "record", "server": fr.env()["EVX_URL"]}
    shown = verify(unpinned)
    assert shown.returncode == 0
    assert "this machine has no key pinned for" in shown.stderr
    assert "under the record log key" in shown.stdout

    # The genuine record under the given and the pinned key.
    record.write_text(json.dumps(genuine))
    for env, args, source in ((unpinned, ["--log-key", real_key], "given"),
                              (offline, [], "pinned")):
        good = verify(env, "--json", *args)
        assert good.returncode == 0, good.stdout + good.stderr
        assert json.loads(good.stdout)["log_keys"][package]["source"] == source


def _evx() -> list[str]:
    from tests.client.harness import EVX

    return list(EVX)


@pytest.mark.parametrize("flag", [False, True])
def test_no_record_is_a_usage_error(tmp_path: Path, flag: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    args = [*_evx(), "verify", str(tmp_path)] + (["--json"] if flag else [])
    proc = subprocess.run(args, capture_output=True, text=True, env={
        **env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == 2 and "holds no download record" in proc.stderr
