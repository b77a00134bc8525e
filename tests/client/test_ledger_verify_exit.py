"""`evx ledger verify` (the real command, in its own process): every integrity or format failure
of the export exits 1, usage exits 2 -- the table a monitor relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evx.cli.exits import _kebab
from tests.client.harness import REPO
from tests.custody.broken_exports import INTEGRITY_FAILURES, KEY, LEDGER

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes


def evx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evx", "ledger", "verify", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_a_good_export_exits_0(tmp_path: Path) -> None:
    export = tmp_path / "ledger.jsonl"
    export.write_bytes(LEDGER.export_bytes())
    proc = evx(str(export), "--key", KEY)
    assert proc.returncode == 0, proc.stderr
    assert "VERIFIED 9 entries" in proc.stdout


@pytest.mark.parametrize("case", sorted(INTEGRITY_FAILURES))
def test_every_integrity_failure_exits_1(case: str, tmp_path: Path) -> None:
    make, error, index = INTEGRITY_FAILURES[case]
    export = tmp_path / "ledger.jsonl"
    export.write_bytes(make())
    proc = evx(str(export), "--key", KEY, "--json")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    result = json.loads(proc.stdout)
    # the slug of the exit-code table: the error class in kebab case
    assert (result["verified"], result["error"]) == (False, _kebab(error))
    if index is not None:
        assert result["index"] == index


@pytest.mark.parametrize(
    "argv",
    [["absent.jsonl", "--key", KEY], ["ledger.jsonl", "--key", "not-a-key"], ["ledger.jsonl"]],
)
def test_usage_exits_2(argv: list[str], tmp_path: Path) -> None:
    (tmp_path / "ledger.jsonl").write_bytes(LEDGER.export_bytes())
    argv = [str(tmp_path / a) if a.endswith(".jsonl") else a for a in argv]
    assert evx(*argv).returncode == 2
