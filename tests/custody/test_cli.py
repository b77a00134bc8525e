"""custody/cli.py: exit codes and output of ``python -m custody verify``."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from custody.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from custody.note import Signer
from tests.custody.broken_exports import INTEGRITY_FAILURES, LEDGER, resigned
from tests.custody.ledgers import ORIGIN, Ledger, random_ledger

KEY = str(LEDGER.signer.verifier_key)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(LEDGER.export_bytes())
    return path


def test_valid_export(export: Path, tmp_path: Path) -> None:
    code, out, _ = run("verify", str(export), "--key", KEY)
    assert code == EXIT_OK and "VERIFIED 9 entries of evx.test/ledger" in out
    key_file = tmp_path / "key.pub"
    key_file.write_text(KEY + "\n")
    saved = tmp_path / "saved.note"
    code, out, _ = run(
        "verify", str(export), "--key", str(key_file), "--json", "--save-checkpoint", str(saved)
    )
    result = json.loads(out)
    assert (
        code == EXIT_OK
        and result["verified"]
        and result["tree_size"] == 9
        and result["entries"] == 9
    )
    assert saved.read_text() == LEDGER.note()


def test_tampered_export_exits_1_with_index(export: Path) -> None:
    lines = export.read_bytes().split(b"\n")
    lines[4] = (
        lines[4]
        .replace(b'"index":3', b'"index":3 ', 1)
        .replace(b'"time":"2025', b'"time":"2026', 1)
    )
    export.write_bytes(b"\n".join(lines))
    code, out, _ = run("verify", str(export), "--key", KEY, "--json")
    result = json.loads(out)
    assert code == EXIT_FAILED
    assert result == {"verified": False, "error": "LeafHashMismatch", "index": 3, "line": None,
                      "reason": "recorded leaf hash is not the hash of the entry"}


def test_truncation_against_saved_checkpoint_exits_1(tmp_path: Path) -> None:
    saved = tmp_path / "saved.note"
    saved.write_text(LEDGER.note())
    old = tmp_path / "old.jsonl"
    old.write_bytes(LEDGER.export_bytes(5))
    code, _, err = run("verify", str(old), "--key", KEY, "--checkpoint", str(saved))
    assert code == EXIT_FAILED and "RollbackError" in err and "entry 5" in err


def test_other_key_exits_1(export: Path) -> None:
    other = str(Signer.generate(ORIGIN).verifier_key)
    code, _, err = run("verify", str(export), "--key", other)
    assert code == EXIT_FAILED and "SignatureError" in err


@pytest.mark.parametrize(
    "argv", [["verify"], ["verify", "x.jsonl", "--key", "not-a-key"], ["frobnicate"]]
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert run(*argv)[0] == EXIT_USAGE


def test_malformed_export_exits_1_with_line(export: Path) -> None:
    export.write_bytes(export.read_bytes().replace(b"\n", b"\n{oops\n", 1))
    code, out, _ = run("verify", str(export), "--key", KEY, "--json")
    assert code == EXIT_FAILED and json.loads(out)["line"] == 2


def test_module_entry_point(export: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "custody", "verify", str(export), "--key", KEY],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "VERIFIED 9 entries" in proc.stdout


# -- every integrity or format failure of the evidence exits 1; only usage exits 2 -----------------

@pytest.mark.parametrize("case", sorted(INTEGRITY_FAILURES))
def test_every_integrity_failure_exits_1(case: str, export: Path) -> None:
    make, error, index = INTEGRITY_FAILURES[case]
    export.write_bytes(make())
    code, out, _ = run("verify", str(export), "--key", KEY, "--json", "--workers", "1")
    result = json.loads(out)
    assert (code, result["verified"], result["error"]) == (EXIT_FAILED, False, error), result
    if index is not None:
        assert result["index"] == index, result


def test_rule_violations_are_listed_with_their_index(export: Path) -> None:
    export.write_bytes(resigned("share.created"))
    code, _, err = run("verify", str(export), "--key", KEY)
    assert code == EXIT_FAILED
    assert "entry 5: access.share: nl-om read 'disk.img' with no live share.created for it" in err


def test_fork_against_saved_checkpoint_exits_1(export: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved.note"
    other = random_ledger(9, random.Random(1))
    saved.write_text(Ledger(other.entries, LEDGER.signer).note(5))
    code, _, err = run("verify", str(export), "--key", KEY, "--checkpoint", str(saved))
    assert code == EXIT_FAILED and "ForkError" in err


def test_saved_checkpoint_not_signed_by_the_key_exits_1(export: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved.note"
    saved.write_text(Ledger(LEDGER.entries, Signer.generate(ORIGIN)).note(5))
    code, _, err = run("verify", str(export), "--key", KEY, "--checkpoint", str(saved))
    assert code == EXIT_FAILED and "SignatureError" in err


@pytest.mark.parametrize("what", ["export", "checkpoint", "key file"])
def test_missing_files_are_usage_errors(what: str, export: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "absent")
    argv = {"export": ["verify", missing, "--key", KEY],
            "checkpoint": ["verify", str(export), "--key", KEY, "--checkpoint", missing],
            "key file": ["verify", str(export), "--key", missing]}[what]
    assert run(*argv)[0] == EXIT_USAGE
