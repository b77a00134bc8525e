"""custody/checkpoint.py: C2SP tlog-checkpoints."""

from __future__ import annotations

import hashlib

import pytest

from custody.checkpoint import Checkpoint
from custody.errors import FormatError, SignatureError
from custody.note import Signer, sign_note

ROOT = hashlib.sha256(b"root").digest()


def test_body_round_trip_with_extensions() -> None:
    cp = Checkpoint("evx.test/log", 42, ROOT, ("ext one", "ext two"))
    body = cp.to_note_body()
    assert body.startswith("evx.test/log\n42\n") and body.endswith("\next one\next two\n")
    assert Checkpoint.from_note_body(body) == cp


def test_sign_and_verify() -> None:
    signer = Signer.generate("evx.test/log")
    cp = Checkpoint("evx.test/log", 7, ROOT)
    assert Checkpoint.verify(cp.sign(signer), signer.verifier_key) == cp


def test_other_key_fails() -> None:
    cp = Checkpoint("evx.test/log", 7, ROOT)
    note = cp.sign(Signer.generate("evx.test/log"))
    with pytest.raises(SignatureError):
        Checkpoint.verify(note, Signer.generate("evx.test/log").verifier_key)


def test_origin_must_be_key_name() -> None:
    signer = Signer.generate("evx.test/log")
    note = sign_note(Checkpoint("other.log", 1, ROOT).to_note_body(), signer)
    with pytest.raises(SignatureError, match="origin"):
        Checkpoint.verify(note, signer.verifier_key)
    with pytest.raises(ValueError):
        Checkpoint("other.log", 1, ROOT).sign(signer)


@pytest.mark.parametrize("body", [
    "log\n1\n", "log\n01\n" + "A" * 43 + "=\n", "log\n-1\nAAAA\n", "log\n1\nAAAA\n", "log\n1\n!!\n",
    "\n1\n" + "A" * 43 + "=\n", "log\n1\n" + "A" * 43 + "=", "log\n1\n" + "A" * 43 + "=\n\n",
    "log\n18446744073709551616\n" + "A" * 43 + "=\n",
])
def test_malformed_bodies(body: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.from_note_body(body)


@pytest.mark.parametrize(
    "args", [("", 1, ROOT), ("a\nb", 1, ROOT), ("log", -1, ROOT), ("log", 1, b"x")]
)
def test_constructor_rejects_misuse(args: tuple[str, int, bytes]) -> None:
    with pytest.raises(ValueError):
        Checkpoint(*args)
