"""Lint and types as gates: ruff with the rules of pyproject.toml, mypy with its settings.

A new finding fails ``./dev test`` (and so CI). The rule sets, the line length and the mypy
strictness (strict for custody/ and storage/, the default elsewhere) live in pyproject.toml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTED = ("evx", "service", "custody", "storage", "migrations", "tests", "bench", "deploy")
TYPED = ("evx", "service", "custody", "storage", "migrations")


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[server,test]')")
    return found


def test_ruff_finds_nothing() -> None:
    result = subprocess.run([_tool("ruff"), "check", "--no-cache", *LINTED], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    # The incremental cache (.mypy_cache, git-ignored) makes a rerun take seconds.
    result = subprocess.run([_tool("mypy"), *TYPED], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gates_are_configured_strictly_enough() -> None:
    """Loosening the gate is a visible change to this test, not a quiet edit of pyproject.toml."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lint = config["tool"]["ruff"]["lint"]
    assert {"E", "F", "W", "B", "UP", "SIM", "RUF", "I", "C90"} <= set(lint["select"])
    assert lint["mccabe"]["max-complexity"] <= 15
    assert not lint.get("ignore"), "ignore a rule for a file with a reason, not everywhere"
    assert config["tool"]["ruff"]["line-length"] <= 100
    strict = next(o for o in config["tool"]["mypy"]["overrides"]
                  if {"custody.*", "storage.*"} <= set(o["module"]))
    for flag in ("disallow_untyped_defs", "disallow_any_generics", "warn_return_any",
                 "no_implicit_reexport", "strict_equality", "warn_unused_ignores"):
        assert strict.get(flag) is True, flag
