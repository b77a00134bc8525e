"""Dates in the officer's own time zone, against a real `evx serve` and Debian's chromium with
its time zone set through the DevTools protocol (Emulation.setTimezoneOverride): every date is
shown in that zone and named, UTC stays in the title and is what a page without script
shows; an expiry typed in that zone is stored as the same instant in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.client.harness import RECIPIENT
from tests.web.harness import Hub, axe_violations, new_browser, sign_in, wait_for
from tests.web.test_security import SESSION, _api, _csrf, _form, session_of

pytestmark = pytest.mark.slow  # a real server and a headless browser


def _zoned_browser(hub: Hub, browsers: list[Any], zone: str) -> Any:
    browser = new_browser()
    browsers.append(browser)
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone})
    sign_in(browser, hub.url, "anna")
    return browser


def _expected(instant: datetime, zone: str) -> str:
    """As the browser should show it: the zone's name and its offset at that instant (summer
    time included), as Intl's "shortOffset" writes it (GMT+1, GMT+10:30, GMT-3:30)."""
    there = instant.astimezone(ZoneInfo(zone))
    offset = there.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    hours, rest = divmod(abs(minutes), 60)
    name = "GMT" + (f"{'+' if minutes >= 0 else '-'}{hours}" + (f":{rest:02d}" if rest else "")
                    if minutes else "")
    return there.strftime(f"%Y-%m-%d %H:%M {zone} ({name})")


def _sealed_package(hub: Hub) -> str:
    anna = session_of(hub, "anna")
    csrf = _csrf(hub, anna)
    created = _form(hub, anna, "/app/packages", {"case_reference": "BKA-TZ",
                                                 "title": "Times", "csrf": csrf})
    package = created.headers["location"].rsplit("/", 1)[1]
    assert _api(hub, anna, "PUT", f"/v1/packages/{package}/items/a.txt", csrf=csrf,
                content=b"a").status_code == 201
    assert _form(hub, anna, f"/app/packages/{package}/seal", {"csrf": csrf}).status_code == 303
    return package


@pytest.mark.parametrize("zone", ["Europe/Paris", "Australia/Adelaide", "America/St_Johns"])
def test_dates_in_the_officers_zone_with_utc_in_the_title(hub: Hub, browsers: list[Any],
                                                          zone: str) -> None:
    package = _sealed_package(hub)
    browser = _zoned_browser(hub, browsers, zone)
    browser.get(f"{hub.url}/app/packages/{package}")
    times = browser.find_elements(By.CSS_SELECTOR, "main time[data-utc]")
    assert len(times) == 2  # created, sealed
    wait_for(browser, lambda b: all(t.get_attribute("data-zone") == zone for t in times),
             "dates shown in the browser's zone")
    for element in times:
        instant = datetime.fromisoformat(element.get_attribute("datetime"))
        assert instant.utcoffset() == timedelta(0)
        assert element.text == _expected(instant, zone)
        assert element.get_attribute("title") == instant.strftime("%Y-%m-%d %H:%M UTC")
    assert _expected(datetime.fromisoformat(times[0].get_attribute("datetime")), zone) \
        in browser.find_element(By.CSS_SELECTOR, "p.meta").text
    # The list page too.
    browser.get(f"{hub.url}/app/")
    listed = browser.find_element(By.CSS_SELECTOR, "#packages time[data-utc]")
    wait_for(browser, lambda b: listed.get_attribute("data-zone") == zone, "the list's dates")
    assert listed.text == _expected(datetime.fromisoformat(listed.get_attribute("datetime")),
                                    zone)


def test_an_expiry_typed_in_the_officers_zone_is_stored_in_utc(hub: Hub,
                                                               browsers: list[Any]) -> None:
    package = _sealed_package(hub)
    browser = _zoned_browser(hub, browsers, "Europe/Paris")
    browser.get(f"{hub.url}/app/packages/{package}")
    label = browser.find_element(By.CSS_SELECTOR, 'label[for="expires_at"]')
    wait_for(browser, lambda b: "Europe/Paris" in label.text, "the expiry's label names the zone")
    assert label.text == "Expires (optional, date and time in your time zone, Europe/Paris)"
    browser.find_element(By.ID, "authority").send_keys(RECIPIENT)
    browser.find_element(By.ID, "legal_basis").send_keys("EIO Directive 2014/41/EU")
    browser.find_element(By.ID, "request_reference").send_keys("MLA-FR-TZ")
    browser.execute_script("arguments[0].value = '2030-01-15T10:00'",
                           browser.find_element(By.ID, "expires_at"))
    browser.find_element(By.ID, "share").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, f"revoke-{RECIPIENT}"), "the share")
    share = _api(hub, session_of(hub, "anna"), "GET", f"/v1/packages/{package}").json()[
        "shares"][0]
    assert datetime.fromisoformat(share["expires_at"]).astimezone(UTC) == \
        datetime(2030, 1, 15, 9, 0, tzinfo=UTC)  # 10:00 in Paris in January
    cell = browser.find_element(By.CSS_SELECTOR, "#shares time[data-utc]")
    assert cell.text == "2030-01-15 10:00 Europe/Paris (GMT+1)" == _expected(
        datetime(2030, 1, 15, 9, 0, tzinfo=UTC), "Europe/Paris")
    assert cell.get_attribute("title") == "2030-01-15 09:00 UTC"
    violations = axe_violations(browser)
    assert not violations, [(v["id"], v["impact"], v["help"]) for v in violations]


def test_without_script_the_page_says_utc(hub: Hub) -> None:
    package = _sealed_package(hub)
    page = httpx.get(f"{hub.url}/app/packages/{package}",
                     headers={"Cookie": f"{SESSION}={session_of(hub, 'anna')}"})
    shown = re.findall(r'<time datetime="([^"]+)" title="([^"]+)" data-utc>([^<]+)</time>',
                       page.text)
    assert len(shown) == 2
    for iso, title, text in shown:
        assert iso.endswith("Z") and title == text and text.endswith(" UTC")
    assert '<script type="module" src="/app/static/time.js"></script>' in page.text
    assert "date and time in UTC" in page.text  # the expiry field's label before any script
