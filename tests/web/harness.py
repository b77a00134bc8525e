"""The web application's test bench: a real `evx serve`, one real OpenID provider per authority
(tests/support/oidc_provider.py), Debian's chromium driven by Selenium through chromium-driver,
and a small real HTTP proxy that can tamper with what it forwards to the browser."""

from __future__ import annotations

import base64
import json
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.client.harness import OPERATOR, OWNER, RECIPIENT, EvxServer
from tests.support.oidc_provider import OpenIDProvider

CLIENT_ID = "evx-web"
PASSWORD = "correct horse battery staple"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30  # the longest a page may take to reach an expected state (a bound, not a timing)
#: Officers of the three authorities: (authority, username, role).
OFFICERS = {
    "anna": (OWNER, "anna.schmidt", "investigator"),
    "luc": (RECIPIENT, "luc.martin", "investigator"),
    "olga": (OPERATOR, "olga.berg", "auditor"),
}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "web"
AXE = Path(__file__).resolve().parents[1] / "support" / "axe" / "axe.min.js"


def browser_available() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    return f"{', '.join(missing)} not installed" if missing else None


@dataclass
class Hub:
    server: EvxServer
    providers: dict[str, OpenIDProvider]

    @property
    def url(self) -> str:
        return self.server.url

    def log_key(self) -> str:
        return httpx.get(self.url + "/v1/ledger/key").text.strip()


def start_hub(root: Path, extra_env: dict[str, str] | None = None,
              prepare: Callable[[EvxServer], dict[str, str]] | None = None) -> Hub:
    """The hub and its providers; ``prepare`` runs once the hub's keys exist, before it starts,
    and returns more environment (e.g. witnesses started for its log key)."""
    providers: dict[str, OpenIDProvider] = {}
    server = EvxServer(root, extra_env=extra_env or {})
    try:
        for authority in (OWNER, RECIPIENT, OPERATOR):
            provider = OpenIDProvider(audience="evidence-exchange").start()
            provider.add_client(CLIENT_ID)
            providers[authority] = provider
        for authority, username, role in OFFICERS.values():
            providers[authority].add_user(username, PASSWORD, role)
        for authority, country, roles in ((OWNER, "DE", "investigator,auditor"),
                                          (RECIPIENT, "FR", "investigator,auditor"),
                                          (OPERATOR, "EU", "auditor")):
            server.admin("authority", "add", authority, "--name", f"{authority} (test)",
                         "--country", country, "--roles", roles, "--issuer",
                         providers[authority].issuer, "--client-id", CLIENT_ID)
        if prepare is not None:
            server.extra_env.update(prepare(server))
        server.start()
    except BaseException:
        server.stop()
        for provider in providers.values():
            provider.stop()
        raise
    return Hub(server, providers)


def stop_hub(hub: Hub) -> None:
    hub.server.stop()
    for provider in hub.providers.values():
        provider.stop()


def new_browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-extensions"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(browser: Any, condition: Callable[[Any], Any], what: str,
             seconds: float = WAIT_S) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        # An element found as the page was being replaced (a form posted, a redirect) is stale:
        # look again on the next poll rather than fail.
        return WebDriverWait(browser, seconds, poll_frequency=0.1, ignored_exceptions=(
            StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        body = browser.find_element("tag name", "body").text[:2000]
        raise AssertionError(f"{what}: not reached at {browser.current_url}\n{body}\n"
                             f"console: {browser.get_log('browser')}") from None


def sign_in(browser: Any, base_url: str, officer: str) -> None:
    """The officer picks their authority, signs in at its provider and lands on the list."""
    from selenium.webdriver.common.by import By

    authority, username, _ = OFFICERS[officer]
    browser.get(base_url + "/app/sign-in")
    browser.find_element(By.ID, f"sign-in-{authority}").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "username"), "the provider's sign-in")
    browser.find_element(By.ID, "username").send_keys(username)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "who"), "signed in")
    assert username in browser.find_element(By.ID, "who").text


def screenshot(browser: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def axe_violations(browser: Any) -> list[dict[str, Any]]:
    """Serious and critical WCAG 2.1 A/AA violations axe-core finds on the current page."""
    browser.execute_script(AXE.read_text())
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}).then("
        "r => done(JSON.stringify(r.violations)), e => done(JSON.stringify([{id: 'axe-error', "
        "impact: 'critical', help: String(e)}])));")
    return [v for v in json.loads(result) if v.get("impact") in ("serious", "critical")]


@dataclass
class TamperingProxy:
    """A real HTTP proxy in front of the hub. ``tamper`` rewrites custody JSON it forwards:
    ``"entry"`` changes one entry's time, ``"checkpoint"`` one byte of the signed note;
    ``"cosignature"`` flips a bit of the last witness cosignature of /v1/ledger/checkpoint and
    of the export's checkpoint."""

    upstream: str
    tamper: str | None = None
    port: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TamperingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "keep-alive", "accept-encoding")}
                with httpx.Client(timeout=60) as client:
                    answer = client.request(self.command, proxy.upstream + self.path,
                                            headers=headers, content=body)
                content = answer.content
                if proxy.tamper and "/custody" in self.path and self.path.startswith(
                        "/v1/packages/") and answer.status_code == 200:
                    content = proxy._rewrite(content)
                elif proxy.tamper and self.path.startswith("/v1/ledger/export") and \
                        answer.status_code == 200:
                    content = proxy._rewrite_export(content)
                elif proxy.tamper == "cosignature" and answer.status_code == 200 and \
                        self.path.startswith("/v1/ledger/checkpoint"):
                    content = tamper_cosignature(content)
                self.send_response(answer.status_code)
                for name, value in answer.headers.multi_items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                            "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="tampering-proxy").start()
        return self

    def _rewrite(self, content: bytes) -> bytes:
        record = json.loads(content)
        if self.tamper == "entry":
            # The record says the package was created a second later than the log signed.
            entry = record["entries"][0]["entry"]
            entry["time"] = entry["time"][:17] + f"{(int(entry['time'][17:19]) + 1) % 60:02d}" + \
                entry["time"][19:]
        elif self.tamper == "checkpoint":
            note = record["checkpoint"]
            body, _, signatures = note.rpartition("\n\n")
            lines = body.split("\n")
            lines[1] = str(int(lines[1]) + 1)  # a tree one entry larger than the one signed
            record["checkpoint"] = "\n".join(lines) + "\n\n" + signatures
            record["tree_size"] = int(lines[1])
        return json.dumps(record).encode()

    def _rewrite_export(self, content: bytes) -> bytes:
        lines = content.split(b"\n")
        if self.tamper == "cosignature":  # in the checkpoint line, the last one
            line = json.loads(lines[-2])
            line["checkpoint"] = tamper_cosignature(line["checkpoint"].encode()).decode()
            lines[-2] = json.dumps(line).encode()
            return b"\n".join(lines)
        # One entry's actor renamed on its way to the browser (line 0 is the header).
        line = json.loads(lines[3])
        line["entry"]["actor"]["subject"] = "someone.else"
        lines[3] = json.dumps(line).encode()
        return b"\n".join(lines)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def tamper_cosignature(note: bytes) -> bytes:
    """The note with one bit of its last signature line's Ed25519 signature flipped (with
    witnesses, the last line is a witness's cosignature; base64 stays valid)."""
    lines = note.decode().split("\n")
    assert lines[-1] == "" and lines[-2].startswith("\u2014 "), note
    head, _, b64 = lines[-2].rpartition(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    lines[-2] = f"{head} {base64.b64encode(bytes(raw)).decode()}"
    return "\n".join(lines).encode()
