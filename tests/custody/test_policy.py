"""custody.policy and custody.cosignature: tlog-policy parsing, quorum rules, cosignature/v1."""

from __future__ import annotations

import base64

import pytest

from custody.checkpoint import Checkpoint
from custody.cosignature import Cosigner, CosignerKey, cosigned_message
from custody.errors import FormatError, SignatureError
from custody.note import Signer
from custody.policy import Policy, PolicyError, QuorumNotMet

LOG = Signer.from_seed("example.org/log", bytes(32))
W = [Cosigner.from_seed(f"w{i}.example.org", bytes([i]) * 32) for i in (1, 2, 3)]
CHECKPOINT = Checkpoint("example.org/log", 5, bytes(range(32)))


def policy_2_of_3() -> Policy:
    return Policy.parse(
        f"# partners\nlog {LOG.verifier_key}\n"
        + "".join(f"witness W{i + 1} {w.key}\n" for i, w in enumerate(W))
        + "group partners 2 W1 W2 W3\n\tquorum   partners  \n")


def cosigned(*signers: Cosigner, time: int = 1_700_000_000) -> str:
    note = CHECKPOINT.sign(LOG)
    return note + "".join(s.cosign(CHECKPOINT.to_note_body(), time) for s in signers)


def test_cosignature_v1_layout() -> None:
    line = W[0].cosign("o\n1\n" + base64.b64encode(bytes(32)).decode() + "\n", 1679315147)
    blob = base64.b64decode(line.split(" ")[2])
    assert line.startswith("\u2014 w1.example.org ")
    assert blob[:4] == W[0].key.key_id.to_bytes(4, "big")
    assert int.from_bytes(blob[4:12], "big") == 1679315147
    assert cosigned_message("a\n", 7) == b"cosignature/v1\ntime 7\na\n"
    assert CosignerKey.parse(str(W[0].key)) == W[0].key
    assert base64.b64decode(str(W[0].key).split("+")[2])[0] == 0x04


def test_quorum_met_names_the_witnesses() -> None:
    accepted = policy_2_of_3().verify_checkpoint(cosigned(W[0], W[2]))
    assert dict(accepted.cosigned) == {"W1": 1_700_000_000, "W3": 1_700_000_000}
    assert accepted.checkpoint == CHECKPOINT


def test_quorum_not_met_says_who_signed() -> None:
    with pytest.raises(QuorumNotMet) as exc:
        policy_2_of_3().verify_checkpoint(cosigned(W[1]))
    assert exc.value.cosigned == ("W2",)
    assert "requires 2 of W1, W2, W3" in exc.value.reason


def test_unknown_cosigners_are_ignored_and_do_not_count() -> None:
    stranger = Cosigner.from_seed("w1.example.org", bytes([9]) * 32)  # same name, other key
    with pytest.raises(QuorumNotMet):
        policy_2_of_3().verify_checkpoint(cosigned(W[0], stranger))


def test_a_bad_cosignature_by_a_policy_witness_is_refused() -> None:
    note = cosigned(W[0], W[1])
    last = note.rstrip("\n").split("\n")[-1]
    blob = bytearray(base64.b64decode(last.split(" ")[2]))
    blob[-1] ^= 1
    bad = note.replace(last, last.split(" ")[0] + " " + last.split(" ")[1] + " "
                       + base64.b64encode(bytes(blob)).decode())
    with pytest.raises(SignatureError, match=r"invalid cosignature by witness w2\.example\.org"):
        policy_2_of_3().verify_checkpoint(bad)


def test_timestamp_is_signed() -> None:
    note = cosigned(W[0], W[1])
    last = note.rstrip("\n").split("\n")[-1]
    blob = bytearray(base64.b64decode(last.split(" ")[2]))
    blob[11] ^= 1  # last byte of the timestamp
    bad = note.replace(last, " ".join(last.split(" ")[:2]) + " "
                       + base64.b64encode(bytes(blob)).decode())
    with pytest.raises(SignatureError):
        policy_2_of_3().verify_checkpoint(bad)


def test_log_signature_is_required() -> None:
    other_log = Signer.from_seed("example.org/log", bytes([7]) * 32)
    note = CHECKPOINT.sign(other_log) + W[0].cosign(CHECKPOINT.to_note_body(), 5) \
        + W[1].cosign(CHECKPOINT.to_note_body(), 5)
    with pytest.raises(SignatureError):
        policy_2_of_3().verify_checkpoint(note)


def test_nested_groups_and_none() -> None:
    text = (f"log {LOG.verifier_key}\n" + "".join(f"witness W{i + 1} {w.key}\n"
                                                  for i, w in enumerate(W))
            + "group a any W1 W2\ngroup b all a W3\nquorum b\n")
    policy = Policy.parse(text)
    assert policy.is_witnessed({"W2", "W3"})
    assert not policy.is_witnessed({"W1", "W2"})
    assert Policy.for_log(LOG.verifier_key).verify_checkpoint(CHECKPOINT.sign(LOG)).cosigned == {}


def test_a_chain_of_groups_is_decided_and_described_in_linear_time() -> None:
    # Each group needs the two before it: evaluated naively, 2^100 visits, and a description
    # spelling out 2^100 names.
    lines = [f"log {LOG.verifier_key}", f"witness W1 {W[0].key}", f"witness W2 {W[1].key}",
             "group g0 any W1", "group g1 any W1 W2"]
    lines += [f"group g{i} all g{i - 1} g{i - 2}" for i in range(2, 100)]
    policy = Policy.parse("\n".join(lines) + "\nquorum g99\n")
    assert policy.is_witnessed({"W1"})
    assert not policy.is_witnessed({"W2"})
    assert policy.describe_quorum() == (
        "2 of (2 of (2 of (2 of g95, g94), (2 of g94, g93)), (2 of (2 of g94, g93), (2 of g93, "
        "g92))), (2 of (2 of (2 of g94, g93), (2 of g93, g92)), (2 of (2 of g93, g92), (2 of "
        "g92, g91)))")  # three levels spelled out, then names
    nested = Policy.parse(f"log {LOG.verifier_key}\nwitness W1 {W[0].key}\n"
                          f"witness W2 {W[1].key}\ngroup a any W1 W2\ngroup b all a W2\n"
                          "quorum b\n")
    assert nested.describe_quorum() == "2 of (1 of W1, W2), W2"


@pytest.mark.parametrize(("text", "reason"), [
    ("log x\nquorum none\n", "line 1"),
    (f"log {LOG.verifier_key}\n", "no quorum line"),
    ("quorum none\nquorum none\n", "exactly one quorum"),
    ("quorum W1\n", "not a witness or group"),
    (f"witness W1 {W[0].key}\nwitness W2 {W[0].key}\nquorum W1\n", "duplicate witness key"),
    (f"witness W1 {W[0].key}\nwitness W1 {W[1].key}\nquorum W1\n", "already defined"),
    (f"witness W1 {W[0].key}\ngroup g 2 W1\nquorum g\n", "exceeds"),
    (f"witness W1 {W[0].key}\ngroup g 0 W1\nquorum g\n", "threshold"),
    (f"witness W1 {W[0].key}\ngroup g any W1 W1\nquorum g\n", "listed twice"),
    (f"witness W1 {W[0].key}\ngroup g any W2\nquorum g\n", "not defined above"),
    (f"witness none {W[0].key}\nquorum none\n", "predefined"),
    (f"witness W1 {LOG.verifier_key}\nquorum W1\n", "type 0x04"),
    ("frob\nquorum none\n", "unknown line type"),
    ("quorum none\x0c\n", "control characters"),
])
def test_invalid_policies(text: str, reason: str) -> None:
    with pytest.raises(PolicyError, match=reason):
        Policy.parse(text)


def test_policy_error_is_a_format_error_and_canonical_ignores_comments() -> None:
    assert issubclass(PolicyError, FormatError)
    a = policy_2_of_3()
    b = Policy.parse("# other comments\n" + a.canonical())
    assert a.canonical() == b.canonical()
    assert a == b
