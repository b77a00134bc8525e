"""Answering a request in the browser (Debian's chromium, real OpenID providers, real server).

FR-OCRTEH files a request to DE-BKA with its web session; DE-BKA's investigator opens it from the
inbox and takes the steps `evx request` offers the executing side -- acknowledge, ask (FR answers
from its own page), recognise, deliver a sealed package, fulfil -- each a form with the session's
CSRF token, each on the request's history and in the ledger. A form without the token or from
another origin is refused and changes nothing; a step the request's state does not allow, or a
refusal without grounds, is refused with the reason on the page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.expected_conditions import staleness_of

from tests.client.harness import OWNER, RECIPIENT
from tests.web.harness import Hub, axe_violations, new_browser, screenshot, sign_in, wait_for

pytestmark = pytest.mark.slow  # a real server and a headless browser

SESSION = "__Host-evx-session"
REFERENCE = "EIO-FR-2026-0077"


def _file_request(browser: Any) -> str:
    """FR's browser files a request through the API with its session (cookie + CSRF header)."""
    answer = browser.execute_async_script("""
      const done = arguments[arguments.length - 1];
      fetch("/v1/requests", {method: "POST", credentials: "same-origin", headers: {
          "Content-Type": "application/json",
          "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content},
        body: JSON.stringify(arguments[0])})
        .then(async (r) => done(JSON.stringify({status: r.status, body: await r.json()})));""",
        {"executing_authority": OWNER, "instrument": "eio", "reference": REFERENCE,
         "case_reference": "OCRTEH-2026-201", "offence_category": "computer-related fraud",
         "measures": ["obtain subscriber data", "preserve traffic data"]})
    result = json.loads(answer)
    assert result["status"] == 201, result
    return str(result["body"]["id"])


def _state(browser: Any) -> str:
    try:
        return str(browser.find_element(By.ID, "request-state").text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""  # between two pages


def _submitted(browser: Any, button: str, what: str) -> None:
    """Click ``button`` and wait until the page it leaves is gone and the next one is there."""
    old = browser.find_element(By.ID, "request-state")
    browser.find_element(By.ID, button).click()
    wait_for(browser, lambda b: staleness_of(old)(b), f"{what} sent")
    wait_for(browser, lambda b: b.find_elements(By.ID, "request-state"), f"back after {what}")


def _history(browser: Any) -> list[str]:
    cells = browser.find_elements(By.CSS_SELECTOR, "#history tbody td:nth-child(2)")
    return [e.text for e in cells]


def _take(browser: Any, step: str, note: str | None = None) -> None:
    if note is not None:
        browser.find_element(By.ID, f"note-{step}").send_keys(note)
    _submitted(browser, f"do-{step}", step)


def _post(hub: Hub, browser: Any, path: str, fields: dict[str, str],
          origin: str | None = None) -> httpx.Response:
    cookie = browser.get_cookie(SESSION)["value"]
    return httpx.post(hub.url + path, data=fields, timeout=30,
                      headers={"Cookie": f"{SESSION}={cookie}", "Origin": origin or hub.url})


def _csrf(browser: Any) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]')
               .get_attribute("content"))


def test_de_answers_an_incoming_request_in_the_browser(hub: Hub, browsers: list[Any],
                                                       tmp_path: Path) -> None:
    luc = new_browser()
    browsers.append(luc)
    sign_in(luc, hub.url, "luc")
    request_id = _file_request(luc)
    page = f"/app/requests/{request_id}"

    anna = new_browser()
    browsers.append(anna)
    sign_in(anna, hub.url, "anna")
    anna.get(hub.url + "/app/requests")
    anna.find_element(By.LINK_TEXT, REFERENCE).click()
    wait_for(anna, lambda b: b.find_elements(By.ID, "request-state"), "the request's page")
    assert _state(anna) == "filed"
    assert "obtain subscriber data; preserve traffic data" in anna.find_element(
        By.CSS_SELECTOR, ".facts").text
    # The executing side is offered its steps from "filed", and nothing of the requesting side.
    offered = {f.get_attribute("id") for f in anna.find_elements(By.CSS_SELECTOR, "form.step")}
    assert {"step-acknowledge", "step-refuse"} <= offered and "step-withdraw" not in offered
    violations = axe_violations(anna)
    assert not violations, [(v["id"], v["impact"], v["help"]) for v in violations]
    screenshot(anna, "request-incoming")

    # CSRF: no token, a wrong one, or the right one from another origin: 403, nothing changes.
    for fields, origin in (({}, None), ({"csrf": "x" * 43}, None),
                           ({"csrf": _csrf(anna)}, "https://evil.example")):
        refused = _post(hub, anna, f"{page}/steps/acknowledge", fields, origin)
        assert refused.status_code == 403, refused.text
    anna.refresh()
    assert _state(anna) == "filed" and "request.acknowledged" not in _history(anna)

    # Acknowledge with the keyboard alone: focus the button, press Enter.
    anna.find_element(By.ID, "do-acknowledge").send_keys(Keys.ENTER)
    wait_for(anna, lambda b: _state(b) == "acknowledged", "acknowledged")
    assert "request.acknowledged" in _history(anna)

    # A step the state does not allow (fulfil before recognition) and a refusal without
    # grounds are refused, with the reason on the page; the state stays.
    token = _csrf(anna)
    for step, fields in (("fulfil", {}), ("refuse", {"note": ""})):
        answer = _post(hub, anna, f"{page}/steps/{step}", {"csrf": token, **fields})
        assert answer.status_code == 303, answer.text
        assert "?error=" in answer.headers["location"], answer.headers
    anna.get(hub.url + _post(hub, anna, f"{page}/steps/fulfil",
                             {"csrf": token}).headers["location"])
    assert re.search(r"acknowledged", anna.find_element(By.ID, "error").text), \
        anna.find_element(By.ID, "error").text
    assert _state(anna) == "acknowledged"

    # Ask; FR answers from its own page (the requesting side's step); DE recognises.
    _take(anna, "ask", "Which subscriber numbers exactly?")
    assert _state(anna) == "info_requested"
    luc.get(hub.url + page)
    assert {f.get_attribute("id") for f in luc.find_elements(By.CSS_SELECTOR, "form.step")} \
        == {"step-answer", "step-withdraw"}
    _take(luc, "answer", "+33 6 12 34 56 78 and +33 6 98 76 54 32")
    assert _state(luc) == "acknowledged"
    anna.get(hub.url + page)
    _take(anna, "recognise")
    assert _state(anna) == "recognised"

    # Deliver a sealed package of DE's as the answer, then mark the request executed in full.
    assert "no sealed package" in anna.find_element(By.ID, "deliver-form").text
    anna.get(hub.url + "/app/packages/new")
    anna.find_element(By.ID, "case_reference").send_keys("BKA-2026-77")
    anna.find_element(By.ID, "title").send_keys("Subscriber data")
    anna.find_element(By.ID, "create").click()
    wait_for(anna, lambda b: b.find_elements(By.ID, "pick-files"), "the package page")
    package = anna.find_element(By.ID, "package").get_attribute("data-package")
    evidence = tmp_path / "subscribers.csv"
    evidence.write_bytes(b"number,subscriber\n+33612345678,redacted\n")
    anna.find_element(By.ID, "pick-files").send_keys(str(evidence))
    wait_for(anna, lambda b: b.find_elements(By.CSS_SELECTOR, '#transfers li[data-state="ok"]'),
             "uploaded")
    anna.get(hub.url + f"/app/packages/{package}")
    anna.find_element(By.ID, "seal").click()
    wait_for(anna, lambda b: b.find_elements(By.ID, "manifest-hash"), "sealed")
    anna.get(hub.url + page)
    _submitted(anna, "deliver", "the delivery")
    assert package in anna.find_element(By.ID, "deliveries").text
    assert "request.delivered" in _history(anna)
    _take(anna, "fulfil", "Subscriber data delivered.")
    assert _state(anna) == "executed"
    assert not anna.find_elements(By.CSS_SELECTOR, "form.step")  # nothing left to do
    history = _history(anna)
    assert history.index("request.acknowledged") < history.index("request.recognised") \
        < history.index("request.fulfilled"), history

    # FR sees it executed, and the package shared with it under the request.
    luc.get(hub.url + page)
    assert _state(luc) == "executed"
    luc.get(hub.url + f"/app/packages/{package}")
    assert REFERENCE in luc.find_element(By.ID, "shared-with-you").text
    assert RECIPIENT in luc.find_element(By.ID, "who").text
