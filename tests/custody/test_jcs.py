"""custody/jcs.py against the rfc8785 package as an oracle."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from custody import jcs

SAFE = jcs.MAX_SAFE_INTEGER
# Every code point except lone surrogates; keys drawn to mix ASCII, BMP above U+E000 and astral.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
KEYS = st.one_of(TEXT, st.sampled_from(["a", "\ue000", "\U0001f600", "\uffff", "\U00010000", "z"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-SAFE, SAFE), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=20,
)


@settings(max_examples=500)
@given(VALUES)
def test_equals_rfc8785(value: Any) -> None:
    assert jcs.canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=300)
@given(VALUES)
def test_general_path_equals_rfc8785(value: Any) -> None:
    assert jcs._serialize(value).encode() == rfc8785.dumps(value)


def _sorts_alike_in_utf16(key: str) -> bool:
    # Code-point order equals UTF-16 order for keys below the surrogate block (U+D800): above
    # it, an astral character (two UTF-16 units from U+D800) sorts before U+E000..U+FFFF.
    return all(ord(c) < 0xD800 for c in key)


@given(st.dictionaries(KEYS, SCALARS, max_size=6))
def test_fast_path_is_chosen_exactly_when_it_is_exact(value: dict[str, Any]) -> None:
    """The fast path is taken for every object whose keys sort alike in code points and UTF-16
    (not only never wrongly), and then json.dumps gives the JCS bytes."""
    fast = jcs._check(value, 0)
    assert fast is all(_sorts_alike_in_utf16(key) for key in value)
    if fast:
        assert jcs.dumps_fast(value) == rfc8785.dumps(value)


def test_fast_path_decision_on_known_objects() -> None:
    assert jcs._check({"actor": {"authority": "DE-BKA"}, "index": 7, "item": "\u00e9t\u00e9"}, 0)
    assert not jcs._check({"a": {"\U0001f600": 1}}, 0)  # nested keys count too


def test_utf16_ordering_differs_from_code_points() -> None:
    value = {"\ue000": 1, "\U0001f600": 2}
    assert not jcs._check(value, 0)
    assert jcs.canonicalize(value) == '{"\U0001f600":2,"\ue000":1}'.encode()


def test_escapes_follow_ecmascript() -> None:
    assert (
        jcs.canonicalize('\x00\x1f\b\t\n\f\r"\\\x7f\u2028/')
        == b'"\\u0000\\u001f\\b\\t\\n\\f\\r\\"\\\\\x7f\xe2\x80\xa8/"'
    )


@pytest.mark.parametrize(
    "bad",
    [1.0, float("nan"), 2**53, -(2**53), {1: 2}, "\ud800", {"a": [b"x"]}, {"k": {"\udfff": 1}}],
)
def test_out_of_domain_is_rejected(bad: Any) -> None:
    with pytest.raises(ValueError):
        jcs.canonicalize(bad)


def test_depth_bound() -> None:
    value: Any = []
    for _ in range(jcs.MAX_DEPTH + 2):
        value = [value]
    with pytest.raises(ValueError, match="deeper"):
        jcs.canonicalize(value)


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"a":2}',
        b'{"a":1.5}',
        b"[1e3]",
        b"[NaN]",
        b"[-Infinity]",
        b"\xff\xfe{}",
        b"\xef\xbb\xbf{}",
        b"{",
        b'"\xed\xa0\x80"',
        b"[" * 100_000,
    ],
)
def test_loads_strict_rejects(text: bytes) -> None:
    with pytest.raises(ValueError):
        jcs.loads_strict(text)


def test_loads_strict_accepts_plain_json() -> None:
    assert jcs.loads_strict(b'{"a":[1,-0,true,null,"\\u00e9"]}') == {
        "a": [1, 0, True, None, "\u00e9"]
    }
