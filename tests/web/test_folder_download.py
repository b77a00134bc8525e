"""Download a whole package as a folder (one streamed ZIP), against a real `evx serve`, real
OpenID providers and Debian's chromium: FR's browser saves the archive into its download
folder; extracted, every item is byte for byte what DE uploaded, inside the archive's folder
whatever its name, and `evx verify` accepts the record inside; the ledger holds one download
per item. Without a share nothing reaches the disk; a share revoked mid-stream cuts it. The
auditors' downloads too: the custody page's record and custody bundle and the ledger page's
export, saved by the browser, verify offline against the log key."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.client.harness import RECIPIENT
from tests.web.harness import Hub, axe_violations, new_browser, screenshot, sign_in, wait_for
from tests.web.test_security import SESSION, _api, _csrf, _form, session_of

pytestmark = pytest.mark.slow  # a real server and a headless browser

NAMES = {
    "handset-17/notes.txt": b"seized 2026-11-02 06:10\n",
    "handset-17/extraction/phone.ufdr": os.urandom(3 * 1024 * 1024 + 5),
    "..data/..notes": b"dots, not a traversal (a '..' segment is refused at upload)\n",
    "report\u202etxt.exe": b"bidi override\n",
    "CON.txt": b"a Windows device name\n",
    "a:b|c?.txt": b"reserved characters\n",
    "C:\\Users\\anna\\notes.txt": b"backslashes, not separators\n",
    ".evx/pkg/manifest.json": b"an item where the record goes\n",
    "deep/" + ("very-long-name-" * 16 + "/") * 4 + "x" * 255: b"long names\n",
}


def _package(hub: Hub, items: dict[str, bytes], *, share: bool = True) -> str:
    """DE creates, fills, seals (and shares with FR) a package, through its web session."""
    anna = session_of(hub, "anna")
    csrf = _csrf(hub, anna)
    created = _form(hub, anna, "/app/packages", {"case_reference": "BKA-2026-17",
                                                 "title": "Seized handset", "csrf": csrf})
    assert created.status_code == 303, created.text
    package = created.headers["location"].rsplit("/", 1)[1]
    for name, data in items.items():
        put = _api(hub, anna, "PUT", f"/v1/packages/{package}/items/{quote(name, safe='/')}",
                   csrf=csrf, content=data)
        assert put.status_code == 201, put.text
    assert _form(hub, anna, f"/app/packages/{package}/seal", {"csrf": csrf}).status_code == 303
    if share:
        shared = _form(hub, anna, f"/app/packages/{package}/shares", {
            "authority": RECIPIENT, "legal_basis": "EIO Directive 2014/41/EU",
            "request_reference": "MLA-FR-2026-0042", "expires_at": "", "csrf": csrf})
        assert "error" not in shared.headers["location"], shared.headers["location"]
    return package


def _custody(hub: Hub, package: str) -> list[dict[str, Any]]:
    """The package's ledger entries, read by its owner."""
    record = _api(hub, session_of(hub, "anna"), "GET", f"/v1/packages/{package}/custody")
    assert record.status_code == 200, record.text
    return [e["entry"] for e in record.json()["entries"]]


def _downloading(hub: Hub, browsers: list[Any], folder: Path, officer: str = "luc") -> Any:
    """``officer`` signed in, in a browser that saves downloads into ``folder``."""
    folder.mkdir()
    browser = new_browser()
    browsers.append(browser)
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {
        "behavior": "allow", "downloadPath": str(folder), "eventsEnabled": True})
    sign_in(browser, hub.url, officer)
    return browser


def _extract_inside(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zipped:
        assert zipped.testzip() is None
        for info in zipped.infolist():
            assert (into / info.filename).resolve().is_relative_to(into.resolve()), info.filename
        zipped.extractall(into)


def test_fr_downloads_the_package_as_a_folder(hub: Hub, browsers: list[Any],
                                              tmp_path: Path) -> None:
    package = _package(hub, NAMES)
    downloads = tmp_path / "downloads"
    luc = _downloading(hub, browsers, downloads)
    luc.get(f"{hub.url}/app/packages/{package}")
    shown = {row.get_attribute("data-name"): row.find_element(By.CSS_SELECTOR, "code").text
             for row in luc.find_elements(By.CSS_SELECTOR, "#items tbody tr")}
    assert shown == {n: hashlib.sha256(d).hexdigest() for n, d in NAMES.items()}  # digests shown
    link = luc.find_element(By.ID, "download-folder")
    link.click()
    status = luc.find_element(By.ID, "folder-status")
    wait_for(luc, lambda b: status.get_attribute("data-started") == "yes", "the page's note")
    assert "check it as shown below" in status.text
    assert f".evx/{package}/SHA256SUMS" in luc.find_element(By.ID, "folder-commands").text
    saved = downloads / f"evidence-{package}.zip"
    wait_for(luc, lambda b: saved.exists() and not list(downloads.glob("*.crdownload")),
             "the archive saved by the browser")
    violations = axe_violations(luc)
    assert not violations, [(v["id"], v["impact"], v["help"]) for v in violations]
    luc.execute_script("document.getElementById('folder').scrollIntoView()")
    screenshot(luc, "package-folder-download")

    out = tmp_path / "extracted"
    _extract_inside(saved, out)
    assert [p.name for p in out.iterdir()] == [f"evidence-{package}"]
    root = out / f"evidence-{package}"
    # Every file below the folder, byte for byte one of DE's (through the record's mapping).
    found = {hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")
             if p.is_file() and ".evx" not in p.relative_to(root).parts[:1]}
    assert found == {hashlib.sha256(d).hexdigest() for d in NAMES.values()}
    assert (root / "handset-17" / "extraction" / "phone.ufdr").read_bytes() == \
        NAMES["handset-17/extraction/phone.ufdr"]
    # The offline checks the page names: sha256sum -c and the CLI's evx verify.
    sums = subprocess.run(["sha256sum", "-c", f".evx/{package}/SHA256SUMS"], cwd=root,
                          capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert sums.stdout.count(": OK") == len(NAMES)
    verify = subprocess.run([sys.executable, "-m", "evx", "verify", str(root)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"VERIFIED {len(NAMES)} item(s) of {package}" in verify.stdout
    # On the record: one download started and completed by FR per item, nothing else moved.
    entries = _custody(hub, package)
    by_luc = [e for e in entries if e["actor"]["subject"] == "luc.martin"]
    started = sorted(e["item"] for e in by_luc if e["action"] == "download.started")
    completed = {e["item"]: e["details"]["bytes_sent"] for e in by_luc
                 if e["action"] == "download.completed"}
    assert started == sorted(NAMES)
    assert completed == {n: len(d) for n, d in NAMES.items()}
    assert all(e["legal"]["basis"] == "EIO Directive 2014/41/EU" for e in by_luc
               if e["action"] == "download.started")


def test_without_a_share_nothing_reaches_the_disk(hub: Hub, browsers: list[Any],
                                                  tmp_path: Path) -> None:
    package = _package(hub, {"statement.txt": b"protected witness identity\n"}, share=False)
    luc = session_of(hub, "luc")
    refused = _api(hub, luc, "GET", f"/v1/packages/{package}/archive")
    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/problem+json"
    assert b"protected witness" not in refused.content
    downloads = tmp_path / "downloads"
    browser = _downloading(hub, browsers, downloads)
    browser.get(f"{hub.url}/v1/packages/{package}/archive")
    wait_for(browser, lambda b: "not found" in b.find_element(By.TAG_NAME, "body").text,
             "the problem shown")
    assert list(downloads.iterdir()) == []
    refusals = [e for e in _custody(hub, package) if e["actor"]["subject"] == "luc.martin"]
    assert [(e["action"], e["outcome"]) for e in refusals] == [  # over HTTP, in the browser
        ("download.started", "denied")] * 2


def test_a_share_revoked_mid_stream_cuts_the_archive(hub: Hub) -> None:
    # Three 16 MiB items: far more than the loopback socket buffers hold, so the revocation
    # comes while the first or second item is still being read.
    items = {f"part-{i}.bin": os.urandom(16 * 1024 * 1024) for i in range(3)}
    package = _package(hub, items)
    luc = session_of(hub, "luc")
    anna = session_of(hub, "anna")
    received = bytearray()
    with httpx.Client(timeout=60) as client, client.stream(
            "GET", f"{hub.url}/v1/packages/{package}/archive",
            headers={"Cookie": f"{SESSION}={luc}"}) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        while len(received) < 1024 * 1024:
            received += next(chunks)
        revoked = _form(hub, anna, f"/app/packages/{package}/shares/{RECIPIENT}/revoke",
                        {"csrf": _csrf(hub, anna)})
        assert revoked.status_code == 303
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in chunks:
                received += chunk
    assert len(received) < sum(len(d) for d in items.values())
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(received)))
    entries = [e for e in _custody(hub, package) if e["actor"]["subject"] == "luc.martin"]
    # The item in flight aborted at its next check (or, had it just ended, the next refused).
    cut = [e for e in entries
           if (e["action"] == "download.aborted" and
               e["reason"].startswith("stopped during the download")) or
           (e["action"] == "download.started" and e["outcome"] == "denied")]
    assert len(cut) == 1, entries
    completed = [e["item"] for e in entries if e["action"] == "download.completed"]
    assert cut[0]["item"] not in completed and len(completed) < len(items)


def test_auditors_download_the_custody_record_and_the_ledger_export(
        hub: Hub, browsers: list[Any], tmp_path: Path) -> None:
    from custody.note import VerifierKey
    from evx.client.trust import verify_custody_pages

    package = _package(hub, {"statement.txt": b"statement\n"})
    downloads = tmp_path / "downloads"
    olga = _downloading(hub, browsers, downloads, "olga")
    key = hub.log_key()

    olga.get(f"{hub.url}/app/packages/{package}/custody")
    olga.find_element(By.ID, "custody-export").click()
    record = downloads / f"custody-{package}.json"
    wait_for(olga, lambda b: record.exists() and not list(downloads.glob("*.crdownload")),
             "the custody record saved")
    entries = verify_custody_pages([json.loads(record.read_bytes())], VerifierKey.parse(key),
                                   package)
    actions = [e.action for e in entries]
    assert actions[0] == "package.created" and "package.sealed" in actions
    assert "share.created" in actions
    # The custody bundle, made under the key pinned in this browser, checked by the CLI.
    olga.find_element(By.ID, "pinned-key").send_keys(key)
    olga.find_element(By.ID, "pin").click()
    olga.find_element(By.ID, "custody-bundle").click()
    bundle = downloads / f"custody-bundle-{package}.json"
    wait_for(olga, lambda b: bundle.exists() and not list(downloads.glob("*.crdownload")),
             "the custody bundle saved")
    assert olga.find_element(By.ID, "bundle-state").get_attribute("data-result") == "saved"
    policy = tmp_path / "policy"
    policy.write_text(f"log {key}\nquorum none\n")
    checked = subprocess.run([sys.executable, "-m", "evx", "verify-bundle", str(bundle),
                              "--policy", str(policy)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert package in checked.stdout
    violations = axe_violations(olga)
    assert not violations, [(v["id"], v["impact"], v["help"]) for v in violations]

    olga.get(f"{hub.url}/app/ledger")
    olga.find_element(By.ID, "ledger-export").click()
    export = downloads / "ledger.jsonl"
    wait_for(olga, lambda b: export.exists() and not list(downloads.glob("*.crdownload")),
             "the ledger export saved")
    verified = subprocess.run([sys.executable, "-m", "custody", "verify", str(export),
                               "--key", key], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert package in export.read_text()
