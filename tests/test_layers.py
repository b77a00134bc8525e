"""Imports run downward: the layer rules of the codebase, checked on every import statement
(function-local ones included), so a shortcut up the layers fails here instead of in review.

- ``custody`` (the offline verifier) and ``storage`` (the encryption format) never import the
  service, the CLI, FastAPI/Starlette or SQLAlchemy/Alembic; ``custody`` imports no ``evx`` code.
- ``evx.protocol`` (the wire contract both sides share) imports the standard library and
  ``custody`` only; ``evx.client`` never imports the service.
- Inside ``service``: the base modules < identity < ledger < packages, requests, events < the
  app (wiring, runtime, health, app). A module imports only from its own layer or below.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# service layers, lowest first; a module belongs to the layer of its longest matching prefix
SERVICE_LAYERS: list[tuple[str, ...]] = [
    # 0: shared base: configuration, database, metrics, limits, the problem-details renderer
    ("service.db", "service.settings", "service.metrics", "service.limits", "service.logs",
     "service.problems", "service.guard", "service.transfer_limits", "service.wiring",
     "service.docs", "service",
     # the Caller protocol alone (no imports): what the base's limits count by
     "service.identity.caller"),
    # 1: who is calling (and the HTTP authentication over it, bearer token or web session)
    ("service.identity", "service.auth", "service.web.sessions", "service.web.tables",
     "service.web.signin"),  # sign-in is identity: providers, registry and sessions only
    # 2: the ledger and its one writer for the HTTP layer
    ("service.ledger", "service.recorder"),
    # 3: the domains that act on the record
    ("service.packages", "service.requests", "service.events"),
    # 4: the running service and the app around it
    ("service.runtime", "service.health", "service.app", "service.request_context",
     "service.datafolder", "service.web", "service.workers", "service.__main__"),
]

# Known imports up the layers, each with the reason it is still there. The test fails when one
# of them is gone, so this list only shrinks.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("service.problems", "service.identity"): "the one error-to-problem table (lazy import)",
    ("service.problems", "service.ledger"): "the one error-to-problem table (lazy import)",
    ("service.problems", "service.packages"): "the one error-to-problem table (lazy import)",
    ("service.problems", "service.requests"): "the one error-to-problem table (lazy import)",
    ("service.settings", "service.ledger.witnesses"): "EVX_WITNESSES parsed by the ledger's "
                                                      "parser (lazy import)",
    ("service.identity.registrar", "service.ledger.models"): "trust changes are recorded as "
                                                             "ledger events",
}

NEVER: dict[str, tuple[str, ...]] = {
    "custody": ("service", "storage", "evx", "fastapi", "starlette", "sqlalchemy", "alembic",
                "typer", "httpx"),
    "storage": ("service", "evx.cli", "evx.client", "fastapi", "starlette", "sqlalchemy",
                "alembic"),
    "evx.client": ("service", "fastapi", "starlette", "sqlalchemy", "alembic"),
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _modules(package: str) -> dict[str, set[str]]:
    base = ROOT.joinpath(*package.split("."))
    return {_module(p): _imports(p) for p in sorted(base.rglob("*.py"))}


def _layer(name: str) -> int | None:
    matches = [(len(prefix), level) for level, prefixes in enumerate(SERVICE_LAYERS)
               for prefix in prefixes if _within(name, prefix)]
    return max(matches)[1] if matches else None


def _upward(modules: dict[str, set[str]]) -> dict[tuple[str, str], tuple[int, int]]:
    found = {}
    for module, imports in modules.items():
        own = _layer(module)
        assert own is not None
        for target in imports:
            level = _layer(target)
            if level is not None and level > own:
                found[(module, target)] = (own, level)
    return found


def _allowed(module: str, target: str) -> tuple[str, str] | None:
    return next((key for key in ALLOWED_UPWARD
                 if _within(module, key[0]) and _within(target, key[1])), None)


def test_service_imports_only_run_down_the_layers() -> None:
    upward = _upward(_modules("service"))
    unexplained = sorted(f"{m} (layer {a}) imports {t} (layer {b})"
                         for (m, t), (a, b) in upward.items() if _allowed(m, t) is None)
    assert not unexplained, "\n".join(unexplained)
    still_needed = {_allowed(m, t) for (m, t) in upward}
    gone = sorted(set(ALLOWED_UPWARD) - still_needed)
    assert not gone, f"no longer imported, drop from ALLOWED_UPWARD: {gone}"


@pytest.mark.parametrize("package", sorted(NEVER))
def test_lower_packages_never_import_the_upper_ones(package: str) -> None:
    bad = sorted(f"{module} imports {target}"
                 for module, imports in _modules(package).items() for target in imports
                 if any(_within(target, banned) for banned in NEVER[package]))
    assert not bad, "\n".join(bad)


def test_the_wire_contract_imports_only_the_standard_library_and_custody() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__", "custody"}
    bad = sorted(f"{module} imports {target}"
                 for module, imports in _modules("evx.protocol").items() for target in imports
                 if target.split(".")[0] not in stdlib and not _within(target, "evx.protocol"))
    assert not bad, "\n".join(bad)


def test_only_the_wiring_reads_the_application_state() -> None:
    """Endpoints receive the running service's parts as typed dependencies (service/wiring.py),
    never by reading ``request.app.state``."""
    readers = sorted(_module(p) for p in (ROOT / "service").rglob("*.py")
                     if "app.state" in p.read_text().replace("``app.state``", ""))
    assert readers == ["service.app", "service.wiring"], readers


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: an identity module importing the packages is caught."""
    modules = {"service.identity.fake": {"service.packages.policy"}}
    assert _upward(modules) == {("service.identity.fake", "service.packages.policy"): (1, 3)}


def test_bench_imports_test_code_only_from_tests_support() -> None:
    """The harnesses benchmarks share with the tests live in tests/support/."""
    bad = sorted(f"{path.name} imports {target}" for path in sorted((ROOT / "bench").glob("*.py"))
                 for target in _imports(path)
                 if _within(target, "tests") and not _within(target, "tests.support"))
    assert not bad, "\n".join(bad)


def test_test_databases_are_made_in_one_place() -> None:
    """PostgreSQL databases for tests and benchmarks are created (and cloned from the migrated
    template) by tests/support/postgres.py only."""
    makers = sorted(str(p.relative_to(ROOT)) for d in ("tests", "bench")
                    for p in (ROOT / d).rglob("*.py")
                    if "CREATE DATABASE" in p.read_text() and p.name != "test_layers.py")
    assert makers == ["tests/support/postgres.py"], makers


def _custody_imports() -> dict[str, set[str]]:
    """custody module -> the custody modules it imports (lazy and TYPE_CHECKING ones too)."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "custody").glob("*.py")):
        name = f"custody.{path.stem}"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("custody"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("custody."))
        graph[name] = targets - {name, "custody"}
    return graph


def test_custody_has_no_import_cycle_and_no_private_cross_module_imports() -> None:
    import ast

    graph = _custody_imports()
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for target in graph.get(node, ()):
                if target == start:
                    cycles.append(" -> ".join([*trail, target]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*trail, target]))
    assert cycles == []
    private = []
    for path in sorted((ROOT / "custody").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("custody."):
                private += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_")]
    assert private == []
