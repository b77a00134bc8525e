"""Moved to :mod:`tests.support.loopback`; this name stays so that existing imports keep
working."""

from tests.support.loopback import MODULE_NAME, SCRIPT, load_cluster_module

__all__ = ["MODULE_NAME", "SCRIPT", "load_cluster_module"]
