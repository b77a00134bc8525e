"""Moved to :mod:`tests.support.evx_server` (the harnesses bench/ may import live in
tests/support/); this name stays so that existing imports keep working."""

from tests.support.evx_server import (
    CLI_TIMEOUT_S,
    EVX,
    OPERATOR,
    OWNER,
    RECIPIENT,
    REPO,
    STARTUP_TIMEOUT_S,
    EvxServer,
    User,
    _base_env,
    free_port,
    stop_group,
)

__all__ = ["CLI_TIMEOUT_S", "EVX", "OPERATOR", "OWNER", "RECIPIENT", "REPO", "STARTUP_TIMEOUT_S",
           "EvxServer", "User", "_base_env", "free_port", "stop_group"]
