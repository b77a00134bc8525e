"""`evx witness serve` answers every request shape of C2SP tlog-witness as the spec says.

One real witness process per module; each test uses its own log (origin) so they are independent.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from custody.checkpoint import Checkpoint
from custody.cosignature import verify_cosignatures
from custody.note import Signer
from custody.witness import format_add_checkpoint, origin_hash
from evx.witness.state import WitnessStore
from tests.witness.harness import Tree, WitnessProcess

LEAVES = [f"entry {i}".encode() for i in range(40)]
TREE = Tree(LEAVES)
LOGS = [Signer.from_seed(f"log{i}.test/ledger", bytes([i + 1]) * 32) for i in range(8)]
STRANGER = Signer.from_seed("stranger.test/ledger", bytes([99]) * 32)


@pytest.fixture(scope="module")
def witness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WitnessProcess]:
    w = WitnessProcess(tmp_path_factory.mktemp("witness"), "witness.test/w1",
                       [log.verifier_key for log in LOGS])
    w.start()
    try:
        yield w
    finally:
        w.stop()


_next_log = iter(LOGS)


@pytest.fixture
def log() -> Signer:
    return next(_next_log)


def note(log: Signer, size: int, tree: Tree = TREE) -> str:
    return Checkpoint(log.name, size, tree.root(size)).sign(log)


def add(witness: WitnessProcess, log: Signer, old: int, size: int, *, tree: Tree = TREE,
        proof: list[bytes] | None = None) -> httpx.Response:
    if proof is None:
        proof = tree.consistency(old, size) if 0 < old < size else []
    return witness.post(format_add_checkpoint(old, proof, note(log, size, tree)))


def test_good_sequence_is_cosigned_with_a_timestamp(witness: WitnessProcess, log: Signer) -> None:
    first = add(witness, log, 0, 5)
    assert first.status_code == 200, first.text
    assert first.text.startswith("\u2014 witness.test/w1 ") and first.text.endswith("\n")
    stamps = verify_cosignatures(note(log, 5) + first.text, [witness.key])
    assert stamps[witness.key] > 1_700_000_000
    second = add(witness, log, 5, 13)
    assert second.status_code == 200, second.text
    assert witness.key in verify_cosignatures(note(log, 13) + second.text, [witness.key])
    # the same checkpoint again (old size = its size, same root): cosigned again
    assert add(witness, log, 13, 13).status_code == 200
    monitored = httpx.get(f"{witness.url}/{origin_hash(log.name)}/checkpoint", timeout=5)
    assert monitored.status_code == 200
    assert monitored.text.startswith(f"{log.name}\n13\n")
    assert witness.key in verify_cosignatures(monitored.text, [witness.key])
    assert Checkpoint.verify(monitored.text, log.verifier_key).size == 13


def test_stale_old_size_is_409_with_the_current_size(witness: WitnessProcess, log: Signer) -> None:
    assert add(witness, log, 0, 8).status_code == 200
    for old, size in ((0, 9), (4, 9), (9, 12)):
        stale = add(witness, log, old, size)
        assert stale.status_code == 409
        assert stale.headers["content-type"] == "text/x.tlog.size"
        assert stale.text == "8\n"
    # a smaller checkpoint from the witnessed size: old size > checkpoint size is 400
    assert add(witness, log, 8, 3).status_code == 400


def test_conflicting_history_is_422_and_kept_as_evidence(witness: WitnessProcess,
                                                          log: Signer) -> None:
    assert add(witness, log, 0, 10).status_code == 200
    forked = Tree([b"rewritten", *LEAVES[1:]])
    same_size = add(witness, log, 10, 10, tree=forked)
    assert same_size.status_code == 422
    # a fork's own (valid, for the fork) consistency proof does not connect to what was seen
    extended = add(witness, log, 10, 20, tree=forked)
    assert extended.status_code == 422, extended.text
    assert add(witness, log, 10, 20).status_code == 200  # the true history still advances
    refused = WitnessStore(witness.db).refusals(log.name)
    assert [old for old, _, _ in refused] == [10, 10]
    assert refused[1][1] == note(log, 20, forked)


def test_bad_proof_is_422(witness: WitnessProcess, log: Signer) -> None:
    assert add(witness, log, 0, 6).status_code == 200
    proof = TREE.consistency(6, 11)
    for bad in ([bytes(32), *proof[1:]], proof[:-1], [*proof, bytes(32)], []):
        assert add(witness, log, 6, 11, proof=bad).status_code == 422
    assert add(witness, log, 0, 0, proof=[]).status_code == 409
    # old size 0 with a non-empty proof, and a size-0 checkpoint whose root is not empty's
    fresh = next(_next_log)
    assert add(witness, fresh, 0, 3, proof=[bytes(32)]).status_code == 422
    wrong_empty = Checkpoint(fresh.name, 0, bytes(32)).sign(fresh)
    assert witness.post(format_add_checkpoint(0, [], wrong_empty)).status_code == 422
    assert add(witness, fresh, 0, 0).status_code == 200
    assert add(witness, log, 6, 11, proof=proof).status_code == 200


def test_unknown_log_is_404(witness: WitnessProcess) -> None:
    response = add(witness, STRANGER, 0, 3)
    assert response.status_code == 404
    assert "unknown log" in response.text


def test_bad_signatures_are_403(witness: WitnessProcess, log: Signer) -> None:
    impostor = Signer.from_seed(log.name, bytes([77]) * 32)  # right origin, wrong key
    assert add(witness, impostor, 0, 3).status_code == 403
    good = note(log, 3)
    sig_line = good.rstrip("\n").rsplit("\n", 1)[1]
    blob = bytearray(base64.b64decode(sig_line.split(" ")[2]))
    blob[-1] ^= 1
    tampered = good.replace(sig_line, " ".join(sig_line.split(" ")[:2]) + " "
                            + base64.b64encode(bytes(blob)).decode())
    assert witness.post(format_add_checkpoint(0, [], tampered)).status_code == 403
    assert WitnessStore(witness.db).latest(log.name) is None


@pytest.mark.parametrize("body", [
    b"",
    b"old 0\n",
    b"old 03\n\nx\n",
    b"old -1\n\n",
    b"new 0\n\n",
    b"old 0\nnot base64!\n\n",
    b"old 0\n" + base64.b64encode(bytes(31)) + b"\n\n",
    b"old 1\n" + (base64.b64encode(bytes(32)) + b"\n") * 64 + b"\n",
    b"\xff\xfe",
])
def test_malformed_requests_are_400(witness: WitnessProcess, body: bytes) -> None:
    log = LOGS[0]
    response = witness.post(body + (note(log, 3).encode() if body.endswith(b"\n\n") else b""))
    assert response.status_code == 400, response.text


def test_malformed_checkpoint_is_400(witness: WitnessProcess) -> None:
    assert witness.post(b"old 0\n\nnot a checkpoint\n").status_code == 400
    unsigned = Checkpoint(LOGS[0].name, 3, TREE.root(3)).to_note_body()
    assert witness.post(format_add_checkpoint(0, [], unsigned)).status_code == 400


def test_http_shapes(witness: WitnessProcess) -> None:
    assert httpx.get(witness.url + "/add-checkpoint", timeout=5).status_code == 404
    assert httpx.get(f"{witness.url}/{origin_hash('nobody')}/checkpoint",
                     timeout=5).status_code == 404
    assert httpx.post(witness.url + "/other", content=b"old 0\n\n", timeout=5).status_code == 404
    too_big = b"old 0\n\n" + b"x" * 200_000
    assert witness.post(too_big).status_code == 413


def test_concurrent_submissions_only_one_advances(witness: WitnessProcess, log: Signer) -> None:
    assert add(witness, log, 0, 4).status_code == 200
    sizes = list(range(5, 25))
    results: dict[int, httpx.Response] = {}
    barrier = threading.Barrier(len(sizes))

    def submit(size: int) -> None:
        body = format_add_checkpoint(4, TREE.consistency(4, size), note(log, size))
        barrier.wait()
        results[size] = witness.post(body)

    threads = [threading.Thread(target=submit, args=(s,)) for s in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sizes  # every request was answered
    winners = [s for s, r in results.items() if r.status_code == 200]
    assert len(winners) == 1, {s: r.status_code for s, r in results.items()}
    losers = {r.status_code for s, r in results.items() if s not in winners}
    assert losers == {409}
    assert {r.text for s, r in results.items() if s not in winners} == {f"{winners[0]}\n"}
    assert WitnessStore(witness.db).latest(log.name).state.size == winners[0]


@pytest.mark.slow  # restarts a real witness process
def test_restart_keeps_state(tmp_path: Path) -> None:
    log = Signer.from_seed(f"restart-{uuid.uuid4().hex[:8]}.test/ledger", bytes([5]) * 32)
    w = WitnessProcess(tmp_path / "w", "witness.test/restart", [log.verifier_key])
    w.start()
    try:
        assert add(w, log, 0, 7).status_code == 200
        key_before = w.key
        w.stop()
        w.start()
        again = add(w, log, 0, 9)
        assert again.status_code == 409 and again.text == "7\n"
        after = add(w, log, 7, 9)
        assert after.status_code == 200
        # the same key as before the restart signs
        assert key_before in verify_cosignatures(note(log, 9) + after.text, [key_before])
        assert WitnessStore(w.db).latest(log.name).state.size == 9
    finally:
        w.stop()
