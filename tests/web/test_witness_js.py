"""The browser's verification modules (service/web/static/tlog.js, witness.js) run in Debian's
chromium against fixed input: the RFC 6962 proof vectors and the signed-note known answer of
../shared/vectors, the project's custody bundle vector (a checkpoint cosigned by two of three
witnesses), and, on the same data, the project's Python implementation (custody.cosignature,
custody.policy): every note and policy below gets the same answer from both."""

from __future__ import annotations

import base64
import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.cosignature import Cosigner, verify_cosignatures
from custody.errors import VerificationError
from custody.note import Signer
from custody.policy import Policy, QuorumNotMet
from service.web.catalogue import MESSAGES
from tests.custody.ledgers import VECTORS
from tests.web.harness import new_browser

pytestmark = pytest.mark.slow  # a headless browser

STATIC = Path(__file__).resolve().parents[2] / "service" / "web" / "static"
BUNDLE = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "custody-bundle-v1.json"
LOG = Signer.from_seed("evx.test/ledger", bytes([1]) * 32)
W = [Cosigner.from_seed(f"witness{i}.test/evx", bytes([20 + i]) * 32) for i in range(4)]
BODY = f"{LOG.name}\n42\n{base64.b64encode(bytes(range(32))).decode()}\nextension line\n"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def page(browsers: list[Any]) -> Iterator[Any]:
    """A browser on a plain page of a loopback server that serves the static modules."""
    handler = functools.partial(_Quiet, directory=str(STATIC))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="static").start()
    try:
        browser = new_browser()
        browsers.append(browser)
        browser.set_script_timeout(120)
        browser.get(f"http://127.0.0.1:{server.server_port}/sha256.js")
        yield browser
    finally:
        server.shutdown()
        server.server_close()


def run(browser: Any, body: str, data: Any) -> Any:
    """Run ``body`` (an async function body with ``tlog``, ``witness`` and ``data`` in scope) in
    the page; its result, or ``{"error": <catalogue key or message>}``."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "const data = JSON.parse(arguments[0]);"
        "(async () => { const tlog = await import('/tlog.js');"
        " const witness = await import('/witness.js');"
        " const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));"
        f" {body} }})().then((r) => done(JSON.stringify({{ok: r}})),"
        " (e) => done(JSON.stringify({error: e.key || e.message})));")
    return json.loads(browser.execute_async_script(script, json.dumps(data)))


def _vectors(kind: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) | {"file": str(p.relative_to(VECTORS))}
            for p in sorted((VECTORS / "rfc6962" / kind).rglob("*.json"))]


def test_rfc6962_vectors(page: Any) -> None:
    inclusion, consistency = _vectors("inclusion"), _vectors("consistency")
    assert len(inclusion) > 50 and len(consistency) > 50
    got = run(page, """
      const out = {};
      for (const c of data.inclusion) {
        let ok = false;
        try {
          const root = await tlog.rootFromInclusion(c.leafIdx, c.treeSize, b64(c.leafHash),
                                                    (c.proof || []).map(b64));
          ok = root !== null && tlog.equal(root, b64(c.root));
        } catch { ok = false; }
        out[c.file] = ok;
      }
      for (const c of data.consistency) {
        out[c.file] = await tlog.verifyConsistency(c.size1, c.size2, (c.proof || []).map(b64),
                                                   b64(c.root1), b64(c.root2));
      }
      return out;""", {"inclusion": inclusion, "consistency": consistency})
    want = {c["file"]: not c["wantErr"] for c in inclusion + consistency}
    assert {k: v for k, v in got["ok"].items() if v != want[k]} == {}
    assert got["ok"].keys() == want.keys()


def test_signed_note_known_answer(page: Any) -> None:
    # ../shared/vectors/README.md: Go's golang.org/x/mod/sumdb/note example.
    text = ("If you think cryptography is the answer to your problem,\n"
            "then you don't know what your problem is.\n")
    note = text + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1F" \
        "FYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    key = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    body = "return await tlog.verifyNote(data.note, tlog.parseKey(data.key));"
    assert run(page, body, {"note": note, "key": key}) == {"ok": text}
    forged = note.replace("you don't", "you do")
    assert run(page, body, {"note": forged, "key": key}) == {"error": "custody.err.bad_signature"}


# The page's catalogue lookup (sha256.js messages()) over data.t, for describeQuorum.
CATALOGUE_JS = """
      const t = (k, v = {}) => (data.t[k] || k).replace(/\\{(\\w+)\\}/g, (_, n) => v[n] ?? "");"""
CATALOGUE = {k: v for k, v in MESSAGES.items() if k.startswith("custody.")}

COSIGNED = """
  const policy = await witness.parsePolicy(data.policy);
  const found = await witness.verifyCosignatures(data.note, policy);
  return {cosigned: Object.fromEntries(found), met: witness.isWitnessed(policy, found.keys())};"""


def test_custody_bundle_vector(page: Any) -> None:
    bundle = json.loads(BUNDLE.read_text())
    note = bundle["proofs"][0].split("\n\n", 1)[1]
    got = run(page, """
      const policy = await witness.parsePolicy(data.policy);
      const result = await witness.verifyUnderPolicy(data.note, policy, policy.logs[0]);
      return {size: result.checkpoint.size, cosigned: Object.fromEntries(result.cosigned),
              met: result.met};""",
              {"note": note, "policy": bundle["policy"]})
    assert got == {"ok": {"size": 9, "met": True,
                          "cosigned": {"FR-PJ": "1767225600", "DE-BKA": "1767225602"}}}
    python = Policy.parse(bundle["policy"]).verify_checkpoint(note)
    assert {k: str(v) for k, v in python.cosigned.items()} == got["ok"]["cosigned"]


def _policy(quorum: str = "group q 2 A B C\nquorum q",
            witnesses: tuple[int, ...] = (0, 1, 2)) -> str:
    lines = [f"log {LOG.verifier_key}"]
    lines += [f"witness {'ABCD'[i]} {W[i].key}" for i in witnesses]
    return "\n".join(lines) + "\n" + quorum + "\n"


def _signed(*cosignatures: str) -> str:
    from custody.note import sign_note

    return sign_note(BODY, LOG) + "".join(cosignatures)


def _raw_line(name: str, key_id: int, timestamp: int, key: Ed25519PrivateKey,
              signed_time: int | None = None) -> str:
    message = f"cosignature/v1\ntime {signed_time or timestamp}\n{BODY}".encode()
    blob = key_id.to_bytes(4, "big") + timestamp.to_bytes(8, "big") + key.sign(message)
    return f"\u2014 {name} {base64.b64encode(blob).decode()}\n"


def _tampered(line: str) -> str:
    head, _, b64 = line.rstrip("\n").rpartition(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[30] ^= 1
    return f"{head} {base64.b64encode(bytes(raw)).decode()}\n"


def _cases() -> dict[str, tuple[str, str]]:
    c = [w.cosign(BODY, 1767225600 + i) for i, w in enumerate(W)]
    other = Ed25519PrivateKey.from_private_bytes(bytes([99]) * 32)
    big = 2**63  # above what tlog-cosignature allows
    return {
        "two of three": (_policy(), _signed(c[0], c[2])),
        "all three and one not in the policy": (_policy(), _signed(c[0], c[1], c[2], c[3])),
        "one only": (_policy(), _signed(c[1])),
        "only a key not in the policy": (_policy(), _signed(c[3])),
        "none": (_policy(), _signed()),
        "a tampered cosignature": (_policy(), _signed(c[0], _tampered(c[1]), c[2])),
        "a tampered one not in the policy": (_policy(), _signed(c[0], c[2], _tampered(c[3]))),
        "the same line twice": (_policy(), _signed(c[0], c[0], c[2])),
        "a policy name's key id, another key": (
            _policy(), _signed(c[0], _raw_line(W[1].name, W[1].key.key_id, 5, other))),
        "a timestamp above 2^63-1": (
            _policy(), _signed(c[0], _raw_line(W[1].name, W[1].key.key_id, big,
                                               W[1]._key))),
        "signed at another time than stated": (
            _policy(), _signed(c[0], _raw_line(W[1].name, W[1].key.key_id, 7, W[1]._key,
                                               signed_time=8))),
        "a short cosignature": (_policy(), _signed(c[0], c[2].rstrip("\n")[:-8] + "AAAA\n")),
        "quorum none": (_policy("quorum none"), _signed()),
        "quorum one witness": (_policy("quorum B"), _signed(c[0], c[2])),
        "nested groups": (_policy("group x any A B\ngroup y all x C\nquorum y"),
                          _signed(c[1], c[2])),
        "nested groups not met": (_policy("group x any A B\ngroup y all x C\nquorum y"),
                                  _signed(c[0], c[1])),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_cosignatures_as_python_decides(page: Any, case: str) -> None:
    policy_text, note = _cases()[case]
    policy = Policy.parse(policy_text)
    try:
        expected: dict[str, Any] = {"ok": {"cosigned": {}, "met": True}}
        witnessed = policy.verify_checkpoint(note)
        expected["ok"]["cosigned"] = {k: str(v) for k, v in witnessed.cosigned.items()}
    except QuorumNotMet as exc:
        by_key = {w.key: w.name for w in policy.witnesses.values()}
        found = verify_cosignatures(note, by_key)
        expected = {"ok": {"cosigned": {by_key[k]: str(v) for k, v in found.items()},
                           "met": False}}
        assert sorted(expected["ok"]["cosigned"]) == sorted(exc.cosigned)
    except VerificationError:
        expected = {"error": True}
    got = run(page, COSIGNED, {"note": note, "policy": policy_text})
    if "error" in expected:
        assert "error" in got, (case, got)
    else:
        assert got == expected, case


GOOD_POLICIES = [
    _policy(),
    "  # comment\n\n" + _policy().replace(" ", " \t ") + "\t\n",
    _policy("group x any A B\ngroup y all x C\nquorum y"),
    f"log {LOG.verifier_key} https://hub.example\nquorum none",
    _policy("group q 3 A B C\nquorum q"),
]
BAD_POLICIES = [
    "",
    _policy("quorum none\nquorum none"),
    _policy("quorum Z"),
    _policy("group q 4 A B C\nquorum q"),
    _policy("group q 0 A B C\nquorum q"),
    _policy("group q 02 A B C\nquorum q"),
    _policy("group q 2 A A C\nquorum q"),
    _policy("group q 2 A none\nquorum q"),
    _policy("group none any A\nquorum none"),
    _policy("group A any B\nquorum A"),
    _policy("group q any A\nquorum q r"),
    _policy("group q any\nquorum q"),
    _policy() + "witness E " + str(W[0].key) + "\n",  # a duplicate key under another name
    _policy() + "log " + str(LOG.verifier_key) + "\n",  # a duplicate log
    _policy() + "monitor x\n",
    _policy().replace("\n", "\r\n"),
    _policy() + "witness E " + str(W[3].key) + " https://a https://b\n",
    f"log {W[0].key}\nquorum none\n",  # a cosigner key as a log key
    f"witness A {LOG.verifier_key}\nquorum A\n",  # a log key as a cosigner key
    f"witness A {str(W[0].key)[:-4]}AAA=\nquorum A\n",  # a key that is not its id's
    f"witness A {str(W[0].key).replace('+', '+0', 1)[:-1]}\nquorum A\n",
    f"log {LOG.verifier_key}\nquorum none\n" + "# padding\n" * 7000,  # over 64 KiB
]


def test_policy_parser_as_python_decides(page: Any) -> None:
    got = run(page, CATALOGUE_JS + """
      const out = [];
      for (const text of data.policies) {
        try {
          const p = await witness.parsePolicy(text);
          out.push({logs: p.logs.length, witnesses: [...p.witnesses.keys()],
                    quorum: witness.describeQuorum(p, t)});
        } catch (e) { out.push({error: e.key || e.message}); }
      }
      return out;""", {"policies": GOOD_POLICIES + BAD_POLICIES, "t": CATALOGUE})["ok"]
    for text, result in zip(GOOD_POLICIES, got[:len(GOOD_POLICIES)], strict=True):
        policy = Policy.parse(text)
        assert result == {"logs": len(policy.logs), "witnesses": list(policy.witnesses),
                          "quorum": policy.describe_quorum()}, text
    for text, result in zip(BAD_POLICIES, got[len(GOOD_POLICIES):], strict=True):
        with pytest.raises(VerificationError):
            Policy.parse(text)
        assert result["error"].startswith("custody.policy."), (text[:200], result)


def test_a_deep_policy_costs_linear_time(page: Any) -> None:
    # Each group needs both groups before it: evaluated naively that is 2^100 visits.
    lines = [_policy("group g0 any A"), "group g1 any A B"]
    lines += [f"group g{i} all g{i - 1} g{i - 2}" for i in range(2, 100)]
    text = "\n".join(lines) + "\nquorum g99\n"
    note = _signed(W[0].cosign(BODY, 5))
    assert run(page, COSIGNED, {"note": note, "policy": text}) == {
        "ok": {"cosigned": {"A": "5"}, "met": True}}
    described = run(page, CATALOGUE_JS + """
      return witness.describeQuorum(await witness.parsePolicy(data.policy), t);""",
                    {"policy": text, "t": CATALOGUE})
    assert described == {"ok": Policy.parse(text).describe_quorum()}  # three levels, then names
