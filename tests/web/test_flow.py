"""The whole flow across three authorities in a real browser (Debian's chromium, headless),
each officer signed in through their own authority's real OpenID provider:

DE-BKA's investigator creates a package, uploads a folder, seals and shares it; FR-OCRTEH's
investigator finds it shared with them, downloads every item and sees each digest verified in
the browser; the operator's auditor pins the log key and sees the custody timeline verified in
the browser -- then, through a proxy that tampers with what the browser is served, one entry
and then the checkpoint show as failed. Screenshots of each page go to docs/web/, and axe-core
checks each page for serious accessibility violations.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.client.harness import RECIPIENT
from tests.web.harness import (
    Hub,
    TamperingProxy,
    axe_violations,
    new_browser,
    screenshot,
    sign_in,
    wait_for,
)

pytestmark = pytest.mark.slow  # a real server and a headless browser

LEGAL_BASIS = "EIO Directive 2014/41/EU"


def _accessible(browser: Any, page: str) -> None:
    violations = axe_violations(browser)
    assert not violations, (page, [(v["id"], v["impact"], v["help"]) for v in violations])


def _texts(browser: Any, selector: str) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def test_de_uploads_fr_verifies_auditor_sees_custody(hub: Hub, browsers: list[Any],
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "handset-17"
    (folder / "extraction").mkdir(parents=True)
    files = {"handset-17/notes.txt": b"seized 2026-11-02 06:10\n",
             "handset-17/extraction/phone.ufdr": os.urandom(9 * 1024 * 1024 + 17)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}

    # -- DE-BKA: create, upload the folder, seal, share --------------------------------------
    anna = new_browser()
    browsers.append(anna)
    anna.get(hub.url + "/app/sign-in")
    _accessible(anna, "sign-in")
    screenshot(anna, "sign-in")
    sign_in(anna, hub.url, "anna")
    anna.find_element(By.LINK_TEXT, "New package").click()
    anna.find_element(By.ID, "case_reference").send_keys("BKA-2026-17")
    anna.find_element(By.ID, "title").send_keys("Seized handset")
    _accessible(anna, "new package")
    screenshot(anna, "new-package")
    anna.find_element(By.ID, "create").click()
    wait_for(anna, lambda b: b.find_elements(By.ID, "pick-folder"), "the package page")
    package = anna.find_element(By.ID, "package").get_attribute("data-package")
    anna.find_element(By.ID, "pick-folder").send_keys(str(folder))
    wait_for(anna, lambda b: len(b.find_elements(
        By.CSS_SELECTOR, '#transfers li[data-state="ok"]')) == 2, "both files uploaded")
    assert anna.find_element(By.ID, "overall").get_attribute("value") == str(
        sum(len(d) for d in files.values()))
    screenshot(anna, "upload")
    # The same folder again: nothing is sent twice, each file found identical by its digest;
    # a different file under an existing name is reported, never mixed in.
    anna.find_element(By.ID, "pick-folder").send_keys(str(folder))
    wait_for(anna, lambda b: len(b.find_elements(
        By.CSS_SELECTOR, '#transfers li[data-state="ok"]')) == 4, "both found identical")
    (tmp_path / "other" / "handset-17").mkdir(parents=True)
    (tmp_path / "other" / "handset-17" / "notes.txt").write_bytes(b"something else\n")
    anna.find_element(By.ID, "pick-folder").send_keys(str(tmp_path / "other" / "handset-17"))
    wait_for(anna, lambda b: b.find_elements(By.CSS_SELECTOR, '#transfers li[data-state="bad"]'),
             "the different file refused")
    anna.find_element(By.ID, "reload").click()
    wait_for(anna, lambda b: b.find_elements(By.CSS_SELECTOR, "#items tbody tr"), "the items")
    listed = {row.get_attribute("data-name"): row.get_attribute("data-sha256")
              for row in anna.find_elements(By.CSS_SELECTOR, "#items tbody tr")}
    assert listed == digests  # the folder's paths as item names, each with its SHA-256
    anna.find_element(By.ID, "seal").click()
    wait_for(anna, lambda b: b.find_elements(By.ID, "manifest-hash"), "the manifest")
    anna.find_element(By.ID, "authority").send_keys(RECIPIENT)
    anna.find_element(By.ID, "legal_basis").send_keys(LEGAL_BASIS)
    anna.find_element(By.ID, "request_reference").send_keys("MLA-FR-2026-0042")
    anna.find_element(By.ID, "share").click()
    wait_for(anna, lambda b: b.find_elements(By.ID, f"revoke-{RECIPIENT}"), "the share")
    assert _texts(
        anna, "#shares tbody td")[:3] == [RECIPIENT, LEGAL_BASIS, "MLA-FR-2026-0042"]
    _accessible(anna, "package (owner)")
    screenshot(anna, "package-owner")
    anna.get(hub.url + "/app/")
    assert "Seized handset" in _texts(anna, "#packages td.name")

    # -- FR-OCRTEH: shared with me, download and verify --------------------------------------
    luc = new_browser()
    browsers.append(luc)
    sign_in(luc, hub.url, "luc")
    luc.get(hub.url + "/app/?show=shared")
    notices = luc.find_element(By.ID, "notices").text  # in-app notice of the new share
    assert f"shared a package with your authority under {LEGAL_BASIS}" in notices
    luc.find_element(By.LINK_TEXT, "Seized handset").click()
    wait_for(luc, lambda b: b.find_elements(By.ID, "verify-all"), "the shared package")
    assert LEGAL_BASIS in luc.find_element(By.ID, "shared-with-you").text
    assert not luc.find_elements(By.ID, "pick-folder")  # a recipient cannot add anything
    luc.find_element(By.ID, "verify-all").click()
    wait_for(luc, lambda b: b.find_element(By.ID, "verify-summary").get_attribute(
        "data-done") == "yes", "every item checked")
    rows = luc.find_elements(By.CSS_SELECTOR, "#items tbody tr")
    assert {r.get_attribute("data-name"): r.get_attribute("data-verified") for r in rows} == {
        name: "yes" for name in files}
    assert all("Verified" in r.find_element(By.CSS_SELECTOR, ".check").text for r in rows)
    # The manifest computed in the browser is put on the record (download.verified).
    wait_for(luc, lambda b: b.find_element(By.ID, "receipt").get_attribute("data-matches"),
             "the receipt")
    assert luc.find_element(By.ID, "receipt").get_attribute("data-matches") == "yes"
    _accessible(luc, "package (recipient)")
    screenshot(luc, "package-recipient")
    luc.get(hub.url + "/app/")
    _accessible(luc, "packages")
    screenshot(luc, "packages")

    # -- the operator's auditor: custody verified in the browser, then tampered with ----------
    proxy = TamperingProxy(hub.url).start()
    try:
        olga = new_browser()
        browsers.append(olga)
        sign_in(olga, proxy.url, "olga")
        olga.get(f"{proxy.url}/app/packages/{package}/custody")
        custody = olga.find_element(By.ID, "custody")
        wait_for(olga, lambda b: custody.get_attribute("data-result") == "failed",
                 "nothing verifies before a key is pinned")
        olga.find_element(By.ID, "pinned-key").send_keys(hub.log_key())
        olga.find_element(By.ID, "pin").click()
        wait_for(olga, lambda b: custody.get_attribute("data-result") == "verified",
                 "the custody timeline verified")
        results = _results(olga)
        assert len(results) >= 6 and set(results.values()) == {"yes"}, results
        actions = _texts(olga, "#timeline tbody td:nth-child(3)")
        for action in ("package.created", "item.uploaded", "package.sealed", "share.created",
                       "download.completed", "download.verified"):
            assert action in actions, actions
        _accessible(olga, "custody")
        olga.execute_script("document.getElementById('checkpoint-state').scrollIntoView()")
        screenshot(olga, "custody-verified")

        proxy.tamper = "entry"  # the first entry's time, changed on its way to the browser
        olga.refresh()
        custody = olga.find_element(By.ID, "custody")
        wait_for(olga, lambda b: custody.get_attribute("data-result") == "failed",
                 "a tampered entry fails")
        results = _results(olga)
        failed = [i for i, ok in results.items() if ok == "no"]
        assert failed == [min(results)], results  # that entry, and only that one
        assert "hash" in olga.find_element(
            By.CSS_SELECTOR, "#timeline tbody tr:first-child td:last-child").text
        olga.execute_script("document.getElementById('checkpoint-state').scrollIntoView()")
        screenshot(olga, "custody-tampered")

        proxy.tamper = "checkpoint"  # a checkpoint whose signature cannot verify
        olga.refresh()
        custody = olga.find_element(By.ID, "custody")
        wait_for(olga, lambda b: custody.get_attribute("data-result") == "failed",
                 "a tampered checkpoint fails")
        assert "FAILED" in olga.find_element(By.ID, "checkpoint-state").text
        assert set(_results(olga).values()) == {"no"}

        # The whole ledger, for the operator's auditors: verified, then a tampered export.
        proxy.tamper = None
        olga.get(proxy.url + "/app/ledger")
        ledger = olga.find_element(By.ID, "ledger")
        wait_for(olga, lambda b: ledger.get_attribute("data-result") == "verified",
                 "the whole ledger verified")
        assert "Verified: all" in olga.find_element(By.ID, "ledger-state").text
        _accessible(olga, "ledger")
        screenshot(olga, "ledger")
        proxy.tamper = "entry"
        olga.refresh()
        ledger = olga.find_element(By.ID, "ledger")
        wait_for(olga, lambda b: ledger.get_attribute("data-result") == "failed",
                 "a tampered export fails")
        assert "2: the entry's hash is not the one recorded" in olga.find_element(
            By.ID, "ledger-state").text
    finally:
        proxy.stop()


def _results(browser: Any) -> dict[int, str]:
    return {int(row.find_element(By.CSS_SELECTOR, "td").text): row.get_attribute("data-verified")
            for row in browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")}
