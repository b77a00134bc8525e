"""A 1 GiB file uploaded through the browser, interrupted by a reload of the page, completes
from where it stopped when the officer picks the same file again (the resumable protocol of
docs/api.md; the browser re-reads the part already sent to rebuild the digest locally)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.web.harness import Hub, new_browser, sign_in, wait_for

GIB = 1024 ** 3
LONG_S = 900  # a bound for 1 GiB on a shared 2-core machine, not a timing


def _write(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = hashlib.sha256(b"evx").digest() * (1024 * 1024 // 32)  # 1 MiB, not all zeros
    with path.open("wb") as out:
        for i in range(size // len(block)):
            chunk = i.to_bytes(8, "big") + block[8:]  # every MiB different
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_a_1_gib_upload_survives_a_reload(hub: Hub, browsers: list[Any], tmp_path: Path) -> None:
    evidence = tmp_path / "disk.img"
    expected = _write(evidence, GIB)
    browser = new_browser()
    browsers.append(browser)
    sign_in(browser, hub.url, "anna")
    browser.get(hub.url + "/app/packages/new")
    browser.find_element(By.ID, "case_reference").send_keys("BKA-2026-18")
    browser.find_element(By.ID, "title").send_keys("Disk image")
    browser.find_element(By.ID, "create").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "pick-files"), "the package page")
    page = browser.current_url

    browser.find_element(By.ID, "pick-files").send_keys(str(evidence))
    wait_for(browser, lambda b: int(b.find_element(By.CSS_SELECTOR, "#transfers progress")
                                    .get_attribute("value") or 0) > GIB // 4,
             "a quarter of the file sent", seconds=LONG_S)
    browser.refresh()  # the officer reloads the page mid-upload
    wait_for(browser, lambda b: b.find_elements(By.ID, "pick-files"), "the page again")
    assert browser.current_url == page
    assert not browser.find_elements(By.CSS_SELECTOR, "#transfers li")  # the page forgot it

    browser.find_element(By.ID, "pick-files").send_keys(str(evidence))  # the same file again
    row = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#transfers li"),
                   "the transfer")[0]
    wait_for(browser, lambda b: row.get_attribute("data-state") in ("ok", "bad"),
             "the upload finished", seconds=LONG_S)
    assert row.get_attribute("data-state") == "ok", row.text
    resumed = int(row.get_attribute("data-resumed-at") or 0)
    assert resumed >= GIB // 8, resumed  # continued from the service's offset, not from 0
    browser.get(page)
    listed = browser.find_element(By.CSS_SELECTOR, "#items tbody tr")
    assert (listed.get_attribute("data-name"), listed.get_attribute("data-size"),
            listed.get_attribute("data-sha256")) == ("disk.img", str(GIB), expected)
