"""Static checks that catch real defects (undefined names, unused imports, syntax errors)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_no_defects() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[server,test]')")
    paths = [str(ROOT / d) for d in ("evx", "service", "custody", "storage", "migrations", "tests",
                                     "bench", "deploy")]
    result = subprocess.run([ruff, "check", "--select", "F,E9", "--no-cache", *paths],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
