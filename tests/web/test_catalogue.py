"""Every text the web application shows comes from the one catalogue (service/web/catalogue.py):
each key a template or script asks for exists, and no template carries text of its own."""

from __future__ import annotations

import re
from pathlib import Path

from service.web.catalogue import MESSAGES, shown

WEB = Path(__file__).resolve().parents[2] / "service" / "web"
# t("key") in templates and scripts; Problem("key") and fail("key") where scripts raise one.
KEY = re.compile(r"""\b(?:t|Problem|fail)\(\s*["']([a-z_.]+)["']""")


def test_every_key_used_is_in_the_catalogue() -> None:
    used: set[str] = set()
    for path in [*WEB.glob("templates/*.html"), *WEB.glob("static/*.js"), WEB / "pages.py"]:
        used |= set(KEY.findall(path.read_text()))
    assert used, "no key found: the pattern is wrong"
    # A key ending in "." is a prefix completed in the template (packages.filter. ~ value).
    prefixes = {k for k in used if k.endswith(".")}
    assert all(any(m.startswith(p) for m in MESSAGES) for p in prefixes)
    assert sorted(used - prefixes - MESSAGES.keys()) == []


def test_templates_hold_no_text_outside_the_catalogue() -> None:
    for path in WEB.glob("templates/*.html"):
        text = re.sub(r"\{%.*?%\}|\{\{.*?\}\}|<[^>]*>", " ", path.read_text(), flags=re.DOTALL)
        words = re.findall(r"[A-Za-z]{3,}", text)
        assert words == [], (path.name, words)


def test_hostile_characters_are_shown_not_applied() -> None:
    assert shown("report\u202etxt.exe") == "report⟨U+202E⟩txt.exe"
    assert shown("a\nb\u200bc") == "a⟨U+000A⟩b⟨U+200B⟩c"
    assert shown("Überwachung — 監視") == "Überwachung — 監視"


def test_a_date_stays_an_element_and_nothing_else_becomes_one() -> None:
    from datetime import datetime

    from service.web.catalogue import t
    from service.web.pages import _when

    at = _when(datetime(2026, 12, 6, 13, 38, 5))  # naive: the database's UTC
    assert str(at) == ('<time datetime="2026-12-06T13:38:05Z" title="2026-12-06 13:38 UTC" '
                       'data-utc>2026-12-06 13:38 UTC</time>')
    text = t("package.owner", authority="DE-BKA", subject='<img src=x onerror="1">', at=at)
    assert text == ("Owned by DE-BKA, created by &lt;img src=x onerror=&#34;1&#34;&gt; on "
                    + str(at))
    assert t("package.owner", authority="DE", subject="<b>", at="now") == \
        "Owned by DE, created by <b> on now"  # plain text: the template escapes it
