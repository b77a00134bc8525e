"""The custody timeline under a witness policy the auditor pinned in the browser, with real
witnesses: three `evx witness serve` processes (tests/witness/harness.py), of which the hub
submits to W1 and W2. The auditor pins the log key and a 2-of-3 policy and sees the timeline
witnessed and verified; then, through the real proxy of the tamper tests, a cosignature with one
bit flipped fails; a policy whose only witness never cosigned this hub (every cosignature is by
a key not in the policy) and a quorum left with one witness are shown as not witnessed, every
entry NOT verified. The whole-ledger page applies the same policy to its export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from custody.note import VerifierKey
from tests.web.harness import (
    Hub,
    TamperingProxy,
    axe_violations,
    new_browser,
    screenshot,
    sign_in,
    start_hub,
    stop_hub,
    wait_for,
)
from tests.witness.harness import WitnessProcess

pytestmark = pytest.mark.slow  # a real server, three witnesses and a headless browser

#: The page waits up to 30 s (as `evx custody --witness-wait`) before it says "not witnessed".
NOT_WITNESSED_WAIT_S = 120


class Witnessed:
    def __init__(self, hub: Hub, witnesses: list[WitnessProcess]) -> None:
        self.hub = hub
        self.witnesses = witnesses

    def policy(self, *names: str, quorum: str) -> str:
        lines = ["# the policy DE-BKA distributes to its auditors", f"log {self.hub.log_key()}"]
        lines += [f"witness W{i} {w.key}" for i, w in enumerate(self.witnesses, start=1)
                  if f"W{i}" in names]
        return "\n".join(lines) + f"\n{quorum}\n"


@pytest.fixture(scope="module")
def witnessed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witnessed]:
    root = tmp_path_factory.mktemp("webwit")
    witnesses: list[WitnessProcess] = []

    def prepare(server: Any) -> dict[str, str]:
        log_key = VerifierKey.parse(server.admin("ledger", "verifier-key"))
        witnesses.extend(WitnessProcess(root / f"w{i}", f"witness{i}.test/evx", [log_key])
                         for i in (1, 2, 3))
        for w in witnesses:
            w.start()
        return {"EVX_WITNESSES": "; ".join(f"W{i} {w.key} {w.url}"
                                           for i, w in enumerate(witnesses[:2], start=1)),
                "EVX_WITNESS_INTERVAL_SECONDS": "0.2", "EVX_WITNESS_TIMEOUT_SECONDS": "3",
                "EVX_WITNESS_MAX_ATTEMPTS": "2",
                # Serve the newest checkpoint with any cosignature: the browser decides.
                "EVX_WITNESS_QUORUM": "1"}

    try:
        hub = start_hub(root / "hub", prepare=prepare)
    except BaseException:
        for w in witnesses:
            w.stop()
        raise
    try:
        yield Witnessed(hub, witnesses)
    finally:
        stop_hub(hub)
        for w in witnesses:
            w.stop()


def _pin_policy(browser: Any, text: str) -> None:
    field = browser.find_element(By.ID, "pinned-policy")
    field.clear()
    field.send_keys(text)
    browser.find_element(By.ID, "pin-policy").click()


def _state(browser: Any) -> tuple[str | None, str | None]:
    custody = browser.find_element(By.ID, "custody")
    return custody.get_attribute("data-result"), browser.find_element(
        By.ID, "witness-state").get_attribute("data-state")


def _ledger_state(browser: Any) -> tuple[str | None, str | None]:
    return browser.find_element(By.ID, "ledger").get_attribute("data-result"), \
        browser.find_element(By.ID, "witness-state").get_attribute("data-state")


def _ledger_results(browser: Any) -> list[str]:
    return [row.get_attribute("data-verified")
            for row in browser.find_elements(By.CSS_SELECTOR, "#ledger-entries tbody tr")]


def _show_results(browser: Any) -> None:
    browser.execute_script("document.getElementById('checkpoint-state').scrollIntoView()")


def _results(browser: Any) -> list[str]:
    return [row.get_attribute("data-verified")
            for row in browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")]


def test_witness_policy_pinned_in_the_browser(witnessed: Witnessed,
                                              browsers: list[Any]) -> None:
    hub = witnessed.hub
    anna = new_browser()
    browsers.append(anna)
    sign_in(anna, hub.url, "anna")
    anna.find_element(By.LINK_TEXT, "New package").click()
    anna.find_element(By.ID, "case_reference").send_keys("BKA-2026-W")
    anna.find_element(By.ID, "title").send_keys("Witnessed package")
    anna.find_element(By.ID, "create").click()
    wait_for(anna, lambda b: b.find_elements(By.ID, "pick-folder"), "the package page")
    package = anna.find_element(By.ID, "package").get_attribute("data-package")

    proxy = TamperingProxy(hub.url).start()
    try:
        olga = new_browser()
        browsers.append(olga)
        sign_in(olga, proxy.url, "olga")
        olga.get(f"{proxy.url}/app/packages/{package}/custody")
        assert "No witness policy pinned" in olga.find_element(By.ID, "policy-state").text
        olga.find_element(By.ID, "pinned-key").send_keys(hub.log_key())
        olga.find_element(By.ID, "pin").click()
        wait_for(olga, lambda b: _state(b) == ("verified", "none"), "verified, no policy")

        # An invalid policy is refused, never pinned (the parser names the line).
        _pin_policy(olga, witnessed.policy("W1", "W2", quorum="group partners 3 W1 W2\n"
                                                                "quorum partners"))
        wait_for(olga, lambda b: "line 5: threshold 3 exceeds the 2 members" in b.find_element(
            By.ID, "policy-state").text, "the bad policy refused")
        assert olga.execute_script(
            "return localStorage.getItem(`evx.pinned-policy:${location.origin}`)") is None

        # The policy DE-BKA distributes: 2 of W1, W2, W3 (the hub submits to W1 and W2).
        good = witnessed.policy("W1", "W2", "W3",
                                quorum="group partners 2 W1 W2 W3\nquorum partners")
        _pin_policy(olga, good)
        wait_for(olga, lambda b: _state(b) == ("verified", "met"), "witnessed and verified")
        text = olga.find_element(By.ID, "witness-state").text
        assert "Quorum met (policy: 2 of W1, W2, W3)" in text, text
        assert "cosigned by W1 at " in text and ", W2 at " in text, text
        assert "Pinned: 1 log(s), 3 witness(es), quorum 2 of W1, W2, W3." in olga.find_element(
            By.ID, "policy-state").text
        assert _results(olga) and set(_results(olga)) == {"yes"}
        violations = axe_violations(olga)
        assert not violations, [(v["id"], v["impact"], v["help"]) for v in violations]
        _show_results(olga)
        screenshot(olga, "custody-witnessed")

        # A cosignature with one bit flipped on its way to the browser: FAILED at once.
        proxy.tamper = "cosignature"
        olga.refresh()
        wait_for(olga, lambda b: _state(b) == ("failed", "failed"), "a tampered cosignature")
        assert "does not verify" in olga.find_element(By.ID, "witness-state").text
        assert set(_results(olga)) == {"no"}
        proxy.tamper = None

        # Only W3, which never cosigned for this hub: W1's and W2's cosignatures are by keys
        # not in the policy, and count for nothing.
        _pin_policy(olga, witnessed.policy("W3", quorum="quorum W3"))
        wait_for(olga, lambda b: _state(b) == ("not-witnessed", "not-met"),
                 "cosignatures by keys not in the policy", seconds=NOT_WITNESSED_WAIT_S)
        text = olga.find_element(By.ID, "witness-state").text
        assert "NOT WITNESSED" in text and "cosigned by no witness of your policy" in text, text
        assert "quorum not met (policy: W3)" in text, text
        assert set(_results(olga)) == {"no"}
        assert all(c.text.startswith("NOT WITNESSED") for c in olga.find_elements(
            By.CSS_SELECTOR, "#timeline tbody td:last-child"))
        assert "None of the" in olga.find_element(By.ID, "custody-summary").text

        # 2 of 3 with one witness: W2 stops; what is recorded after is cosigned by W1 alone.
        witnessed.witnesses[1].stop()
        _pin_policy(olga, good)
        # The page was not witnessed before too: wait for the verdict under the new policy.
        wait_for(olga, lambda b: _state(b) == ("not-witnessed", "not-met") and "(policy: 2 of"
                 in b.find_element(By.ID, "witness-state").text,
                 "a quorum of two with one witness", seconds=NOT_WITNESSED_WAIT_S)
        text = olga.find_element(By.ID, "witness-state").text
        assert "is cosigned by W1 at " in text and "W2 at" not in text, text
        assert "quorum not met (policy: 2 of W1, W2, W3)" in text, text
        assert set(_results(olga)) == {"no"}
        violations = axe_violations(olga)
        assert not violations, [(v["id"], v["impact"], v["help"]) for v in violations]
        _show_results(olga)
        screenshot(olga, "custody-not-witnessed")

        # The whole ledger under the same policy: its export ends with the newest witnessed
        # checkpoint, cosigned by W1 alone; then any one witness is enough; then a tampered
        # cosignature in the export.
        olga.get(proxy.url + "/app/ledger")
        wait_for(olga, lambda b: _ledger_state(b) == ("not-witnessed", "not-met"),
                 "the ledger not witnessed")
        text = olga.find_element(By.ID, "witness-state").text
        assert "cosigned by W1 at " in text and "quorum not met" in text, text
        assert set(_ledger_results(olga)) == {"no"}
        assert "NOT verified" in olga.find_element(By.ID, "ledger-state").text
        _pin_policy(olga, witnessed.policy("W1", "W2", "W3",
                                           quorum="group anyone any W1 W2 W3\nquorum anyone"))
        wait_for(olga, lambda b: _ledger_state(b) == ("verified", "met"), "the ledger witnessed")
        assert "Quorum met (policy: 1 of W1, W2, W3)" in olga.find_element(
            By.ID, "witness-state").text
        assert _ledger_results(olga) and set(_ledger_results(olga)) == {"yes"}
        violations = axe_violations(olga)
        assert not violations, [(v["id"], v["impact"], v["help"]) for v in violations]
        proxy.tamper = "cosignature"
        olga.refresh()
        wait_for(olga, lambda b: _ledger_state(b) == ("failed", "failed"),
                 "a tampered cosignature in the export")
        assert "does not verify" in olga.find_element(By.ID, "witness-state").text
    finally:
        proxy.stop()
