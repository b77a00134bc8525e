"""Security of the web application, against a real `evx serve` and the real OpenID providers:
security headers and CSP, session cookie flags, fixation, login CSRF, CSRF on forms and on the
API with the session cookie, sign-out at the provider, and hostile names rendered inert in a
real browser."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.client.harness import OWNER, RECIPIENT
from tests.web.harness import (
    OFFICERS,
    PASSWORD,
    Hub,
    axe_violations,
    new_browser,
    screenshot,
    sign_in,
    wait_for,
)

pytestmark = pytest.mark.slow  # a real server and a headless browser

SESSION = "__Host-evx-session"
SIGN_IN = "__Host-evx-sign-in"


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the raw header, attributes included)."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        found[header.split("=", 1)[0]] = header
    return found


def _value(set_cookie: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    jar.load(set_cookie)
    return next(iter(jar.values())).value


def http_sign_in(hub: Hub, officer: str, *, presented: str | None = None,
                 skip_binding: bool = False) -> httpx.Response:
    """The browser's part of a sign-in, over HTTP; returns the callback's answer."""
    authority, username, _ = OFFICERS[officer]
    cookie = {"Cookie": f"{SESSION}={presented}"} if presented else {}
    with httpx.Client(timeout=30) as client:
        start = client.get(f"{hub.url}/app/sign-in/{authority}", headers=cookie)
        assert start.status_code == 303, start.text
        state = _value(_set_cookies(start)[SIGN_IN])
        authorize = start.headers["location"]
        assert "code_challenge_method=S256" in authorize and f"state={state}" in authorize
        assert client.get(authorize).status_code == 200
        answer = client.post(authorize, data={"username": username, "password": PASSWORD})
        assert answer.status_code == 302, answer.text
        jar = [] if skip_binding else [f"{SIGN_IN}={state}"]
        if presented:
            jar.append(f"{SESSION}={presented}")
        return client.get(answer.headers["location"],
                          headers={"Cookie": "; ".join(jar)} if jar else {})


def session_of(hub: Hub, officer: str) -> str:
    done = http_sign_in(hub, officer)
    assert done.status_code == 200, done.text
    return _value(_set_cookies(done)[SESSION])


def _csrf(hub: Hub, token: str) -> str:
    page = httpx.get(hub.url + "/app/", headers={"Cookie": f"{SESSION}={token}"})
    assert page.status_code == 200
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found
    return found.group(1)


def _api(hub: Hub, token: str, method: str, path: str, csrf: str | None = None,
         **kwargs: Any) -> httpx.Response:
    headers = {"Cookie": f"{SESSION}={token}", **kwargs.pop("headers", {})}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return httpx.request(method, hub.url + path, headers=headers, timeout=30, **kwargs)


def _form(hub: Hub, token: str, path: str, fields: dict[str, str],
          origin: str | None = None) -> httpx.Response:
    headers = {"Cookie": f"{SESSION}={token}", "Origin": origin or hub.url}
    return httpx.post(hub.url + path, data=fields, headers=headers, timeout=30)


def _titles(hub: Hub, token: str) -> list[str]:
    listed = _api(hub, token, "GET", "/v1/packages")
    assert listed.status_code == 200, listed.text
    return [p["title"] for p in listed.json()["packages"]]


def test_every_page_has_a_strict_csp_and_no_inline_script(hub: Hub) -> None:
    token = session_of(hub, "anna")
    created = _form(hub, token, "/app/packages", {"case_reference": "CSP", "title": "CSP",
                                                  "csrf": _csrf(hub, token)})
    package = created.headers["location"]  # its page and its custody page (bundle download)
    for path in ("/app/sign-in", "/app/", "/app/packages/new", "/app/requests", package,
                 package + "/custody"):
        page = httpx.get(hub.url + path, headers={"Cookie": f"{SESSION}={token}"})
        assert page.status_code == 200, (path, page.text)
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "default-src 'none'" in csp and "unsafe" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert not re.search(r"<script(?![^>]*\ssrc=)", page.text), path  # no inline script
        assert not re.search(r"\son[a-z]+\s*=", page.text), path  # no inline handlers
        assert not re.search(r"\sstyle\s*=", page.text), path
        assert "http://" not in page.text.replace(hub.url, "") or path == "/app/sign-in"
    # The whole ledger is the operator's auditors' alone.
    assert httpx.get(hub.url + "/app/ledger", headers={"Cookie": f"{SESSION}={token}"}
                     ).status_code == 403


def test_session_cookie_flags_and_no_fixation(hub: Hub) -> None:
    planted = "attacker-chosen-session-id"
    done = http_sign_in(hub, "anna", presented=planted)
    assert done.status_code == 200, done.text
    cookie = _set_cookies(done)[SESSION]
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= attributes, cookie
    token = _value(cookie)
    assert token != planted and len(token) >= 43  # 256 bits, minted by the service
    assert _api(hub, planted, "GET", "/v1/packages").status_code == 401
    assert _api(hub, token, "GET", "/v1/packages").status_code == 200
    # The bearer-token-free API call is the officer the provider signed in.
    # An attacker's own valid session planted in a victim's browser is ended at sign-in.
    attacker = session_of(hub, "luc")
    victim = http_sign_in(hub, "anna", presented=attacker)
    fresh = _value(_set_cookies(victim)[SESSION])
    assert fresh not in (attacker, token)
    assert _api(hub, attacker, "GET", "/v1/packages").status_code == 401
    assert _api(hub, fresh, "GET", "/v1/packages").status_code == 200


def test_a_sign_in_answer_without_the_browser_binding_is_refused(hub: Hub) -> None:
    refused = http_sign_in(hub, "anna", skip_binding=True)  # login CSRF: someone else's code
    assert refused.status_code == 400
    assert SESSION not in _set_cookies(refused)
    assert "does not belong to a sign-in started in this browser" in refused.text


def test_csrf_is_refused_on_forms_and_on_the_api(hub: Hub) -> None:
    token = session_of(hub, "anna")
    csrf = _csrf(hub, token)
    before = _titles(hub, token)
    fields = {"case_reference": "BKA-CSRF", "title": "Forged"}
    assert _form(hub, token, "/app/packages", fields).status_code == 403  # no token
    assert _form(hub, token, "/app/packages", {**fields, "csrf": "x" * 43}).status_code == 403
    assert _form(hub, token, "/app/packages", {**fields, "csrf": csrf},
                 origin="https://evil.example").status_code == 403
    assert _titles(hub, token) == before  # nothing was created
    created = _form(hub, token, "/app/packages", {**fields, "title": "Real", "csrf": csrf})
    assert created.status_code == 303, created.text
    package = created.headers["location"].rsplit("/", 1)[1]
    assert "Real" in _titles(hub, token)

    # The API with the session cookie: any change needs X-CSRF-Token.
    item = f"/v1/packages/{package}/items/note.txt"
    assert _api(hub, token, "PUT", item, content=b"forged").status_code == 403
    assert _api(hub, token, "PUT", item, csrf="wrong", content=b"forged").status_code == 403
    assert _api(hub, token, "GET", f"/v1/packages/{package}").json()["items"] == []
    stored = _api(hub, token, "PUT", item, csrf=csrf, content=b"real")
    assert stored.status_code == 201, stored.text
    assert _api(hub, token, "POST", f"/v1/packages/{package}/seal").status_code == 403
    assert _api(hub, token, "GET", f"/v1/packages/{package}").json()["sealed"] is False
    # A bearer token still works without any CSRF token (scripts, evx).
    assert _api(hub, token, "GET", f"/v1/packages/{package}/items/note.txt/content").content \
        == b"real"


def test_sign_out_ends_the_session_here_and_at_the_provider(hub: Hub) -> None:
    token = session_of(hub, "luc")
    provider = hub.providers[RECIPIENT]
    live = [t for t in provider.state.refresh_tokens.values() if not t.revoked
            and t.user.username == "luc.martin"]
    assert live
    refused = _form(hub, token, "/app/sign-out", {})  # without the CSRF token: nothing ends
    assert refused.status_code == 403
    assert _api(hub, token, "GET", "/v1/packages").status_code == 200
    out = _form(hub, token, "/app/sign-out", {"csrf": _csrf(hub, token)})
    assert out.status_code == 200 and "Signed out" in out.text
    assert _api(hub, token, "GET", "/v1/packages").status_code == 401
    assert any(t.revoked for t in live)


HOSTILE_TITLE = '<img src=x onerror="window.__xss=1">Seized <b>handset</b>'
HOSTILE_CASE = "</td><script>window.__xss=2</script>"
HOSTILE_BASIS = '"><svg onload="window.__xss=3">EIO'
HOSTILE_NAMES = ['<img src=x onerror="window.__xss=4">.txt', "report\u202etxt.exe",
                 "deep/" + ("very-long-name-" * 16 + "/") * 4 + "end.bin"]


@pytest.fixture
def hostile_package(hub: Hub) -> str:
    token = session_of(hub, "anna")
    csrf = _csrf(hub, token)
    created = _form(hub, token, "/app/packages", {"case_reference": HOSTILE_CASE,
                                                   "title": HOSTILE_TITLE, "csrf": csrf})
    assert created.status_code == 303, created.text
    package = created.headers["location"].rsplit("/", 1)[1]
    for name in HOSTILE_NAMES:
        put = _api(hub, token, "PUT", f"/v1/packages/{package}/items/{quote(name, safe='/')}",
                   csrf=csrf, content=name.encode())
        assert put.status_code == 201, put.text
    assert _form(hub, token, f"/app/packages/{package}/seal", {"csrf": csrf}).status_code == 303
    shared = _form(hub, token, f"/app/packages/{package}/shares", {
        "authority": RECIPIENT, "legal_basis": HOSTILE_BASIS,
        "request_reference": "<i>MLA</i>", "expires_at": "", "csrf": csrf})
    assert shared.status_code == 303 and "error" not in shared.headers["location"]
    return package


def test_hostile_names_titles_and_legal_bases_are_inert_in_the_browser(
        hub: Hub, browsers: list[Any], hostile_package: str) -> None:
    browser = new_browser()
    browsers.append(browser)
    sign_in(browser, hub.url, "luc")
    browser.get(hub.url + "/app/?show=shared")
    for page in (hub.url + "/app/?show=shared",
                 f"{hub.url}/app/packages/{hostile_package}"):
        browser.get(page)
        wait_for(browser, lambda b: b.find_elements(By.ID, "main"), page)
        assert browser.execute_script("return window.__xss") is None, page
        assert browser.execute_script(
            "return document.querySelectorAll('main img, main svg, main script, main b, "
            "main i').length") == 0, page
        text = browser.find_element(By.ID, "main").text
        assert "Seized <b>handset</b>" in text
    assert HOSTILE_BASIS in browser.find_element(By.ID, "shared-with-you").text
    names = browser.find_element(By.ID, "items").text
    assert HOSTILE_NAMES[0] in names
    assert "report⟨U+202E⟩txt.exe" in names  # the override is shown, never applied
    assert HOSTILE_CASE in browser.find_element(By.ID, "case-ref").text
    screenshot(browser, "hostile-names")
    # The owner's view shows the legal basis in the shares table, inert too.
    owner = new_browser()
    browsers.append(owner)
    sign_in(owner, hub.url, "anna")
    owner.get(f"{hub.url}/app/packages/{hostile_package}")
    assert owner.execute_script("return window.__xss") is None
    assert HOSTILE_BASIS in owner.find_element(By.ID, "shares").text
    assert OWNER in owner.find_element(By.ID, "who").text


def test_requests_inbox_lists_incoming_and_outgoing_with_deadlines(hub: Hub,
                                                                  browsers: list[Any]) -> None:
    # FR files a request to DE through the API with its web session (cookie + CSRF header).
    luc = session_of(hub, "luc")
    filed = _api(hub, luc, "POST", "/v1/requests", csrf=_csrf(hub, luc), json={
        "executing_authority": OWNER, "instrument": "eio", "reference": "EIO-FR-2026-0042",
        "case_reference": "OCRTEH-2026-117", "offence_category": "computer-related fraud",
        "measures": ["obtain subscriber data"]})
    assert filed.status_code == 201, filed.text
    due = filed.json()["next_deadline"]
    browser = new_browser()
    browsers.append(browser)
    sign_in(browser, hub.url, "anna")
    browser.get(hub.url + "/app/requests")
    row = browser.find_element(By.CSS_SELECTOR, "#requests tbody tr").text
    assert "EIO-FR-2026-0042" in row and "Incoming" in row and RECIPIENT in row
    assert due["milestone"] in row
    # Shown in the browser's zone (time.js), the instant in UTC in the title.
    assert browser.find_element(By.CSS_SELECTOR, "#requests tbody tr time").get_attribute(
        "title").endswith(" UTC")
    violations = axe_violations(browser)
    assert not violations, [(v["id"], v["help"]) for v in violations]
    screenshot(browser, "requests")


def test_keyboard_only(hub: Hub, browsers: list[Any]) -> None:
    from selenium.webdriver.common.keys import Keys

    browser = new_browser()
    browsers.append(browser)
    sign_in(browser, hub.url, "anna")
    browser.get(hub.url + "/app/packages/new")
    active = browser.switch_to.active_element
    active.send_keys(Keys.TAB)  # the first stop is the skip link
    assert browser.switch_to.active_element.get_attribute("class") == "skip"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    for _ in range(2):  # main -> CSRF is hidden -> case reference
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.get_attribute("id") == "case_reference":
            break
    assert browser.switch_to.active_element.get_attribute("id") == "case_reference"
    browser.switch_to.active_element.send_keys("BKA-KEYS", Keys.TAB, "Typed, not clicked",
                                               Keys.ENTER)
    wait_for(browser, lambda b: "/app/packages/pkg_" in b.current_url, "the new package")
    assert "Typed, not clicked" in browser.find_element(By.TAG_NAME, "h1").text
