"""Import ``deploy/loopback-cluster.py`` (a script, named with a dash) as a module (for the
deploy tests and bench/bench_cluster.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "loopback-cluster.py"
MODULE_NAME = "evx_loopback_cluster"


def load_cluster_module() -> ModuleType:
    """The script as a module (loaded once per process)."""
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME]
    spec = importlib.util.spec_from_file_location(MODULE_NAME, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module
