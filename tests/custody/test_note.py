"""custody/note.py: C2SP signed notes."""

from __future__ import annotations

import base64

import pytest

from custody.errors import FormatError, SignatureError
from custody.note import (
    MAX_SIGNATURES,
    Signer,
    VerifierKey,
    key_id,
    open_note,
    parse_note,
    sign_note,
)

# Known answer from /work/shared/vectors/README.md (golang.org/x/mod/sumdb/note).
PN_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PN_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PN_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
PN_NOTE = PN_TEXT + "\n" + PN_SIG


def test_known_answer_verifies() -> None:
    key = VerifierKey.parse(PN_KEY)
    assert key.name == "PeterNeumann" and key.key_id == 0xC74F20A3
    assert str(key) == PN_KEY
    assert open_note(PN_NOTE, [key]) == PN_TEXT
    assert open_note(PN_NOTE.encode(), [key]) == PN_TEXT


def test_known_answer_flipped_text_byte_fails() -> None:
    tampered = PN_NOTE.replace("cryptography", "cryptographY")
    with pytest.raises(SignatureError, match="invalid signature"):
        open_note(tampered, [VerifierKey.parse(PN_KEY)])


def test_known_answer_flipped_signature_bit_fails() -> None:
    blob = bytearray(base64.b64decode(PN_SIG.split()[2]))
    blob[10] ^= 0x01
    note = PN_TEXT + "\n\u2014 PeterNeumann " + base64.b64encode(bytes(blob)).decode() + "\n"
    with pytest.raises(SignatureError):
        open_note(note, [VerifierKey.parse(PN_KEY)])


def test_sign_then_open_round_trip_and_unknown_signatures_ignored() -> None:
    a, b = Signer.generate("log.a"), Signer.generate("log.b")
    note = sign_note("hello\nworld\n", a)
    assert open_note(note, [a.verifier_key]) == "hello\nworld\n"
    both = note + sign_note("hello\nworld\n", b).split("\n\n")[1]
    assert open_note(both, [b.verifier_key]) == "hello\nworld\n"
    with pytest.raises(SignatureError, match="no signature by a trusted key"):
        open_note(note, [b.verifier_key])


def test_same_name_other_key_is_unknown_not_bad() -> None:
    real, impostor = Signer.generate("log"), Signer.generate("log")
    with pytest.raises(SignatureError, match="no signature by a trusted key"):
        open_note(sign_note("x\n", impostor), [real.verifier_key])


@pytest.mark.parametrize("note", [
    "no signatures\n",
    "text\n\n",
    "text\n\n\u2014 log AAAA\n",  # signature too short
    "text\n\n- log AAAAAAAAAAAAAAAA\n",  # ASCII dash
    "text\n\n\u2014 log !!!!\n",
    "text\n\n\u2014 lo+g AAAAAAAAAAAAAAAA\n",
    "text\n\n\u2014 log AAAAAAAAAAAAAAAA",  # no final newline
    "te\x00xt\n\n\u2014 log AAAAAAAAAAAAAAAA\n",
    "text\n\n" + "\u2014 log AAAAAAAAAAAAAAAA\n" * (MAX_SIGNATURES + 1),
    "x" * 70_000 + "\n\n\u2014 log AAAAAAAAAAAAAAAA\n",
])
def test_malformed_notes(note: str) -> None:
    with pytest.raises(FormatError):
        open_note(note, [Signer.generate("log").verifier_key])


def test_non_utf8_note_is_malformed() -> None:
    with pytest.raises(FormatError):
        parse_note(b"\xff\n\n\xe2\x80\x94 log AAAAAAAAAAAAAAAA\n")


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nl\n"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValueError):
        key_id(name, bytes(32))
    with pytest.raises(ValueError):
        Signer.generate(name)


@pytest.mark.parametrize("text", ["", "no newline", "ctrl\x07\n"])
def test_sign_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        sign_note(text, Signer.generate("log"))


@pytest.mark.parametrize("key", [
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key id
    "PeterNeumann+c74f20a3+AhpcHQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong algorithm
    "PeterNeumann+c74f20a3",
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
])
def test_bad_verifier_keys(key: str) -> None:
    with pytest.raises(FormatError):
        VerifierKey.parse(key)


def test_verifier_key_string_round_trips_even_with_plus_in_base64() -> None:
    keys = [Signer.from_seed("evx.test/log", bytes([i]) * 32).verifier_key for i in range(40)]
    assert any("+" in str(k).split("+", 2)[2] for k in keys)
    for key in keys:
        assert VerifierKey.parse(str(key)) == key
