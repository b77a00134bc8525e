"""What a server-side command checks before it runs, so it never guesses (issue 12, item 6).

* ``EVX_*`` variables that nothing reads are warned about, one line each, with the closest
  known name: a misspelt setting would otherwise be ignored without a word.
* The data folder (``EVX_DATA_DIR``) must exist: only ``evx init`` (or ``evx serve --init``)
  creates one, so a command run in the wrong directory never leaves an empty ``./data``.
* The command runs under a private umask: whatever it creates is 0700/0600 at most.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from evx.client.errors import DataFolderMissing

#: Variables read outside the settings table and the commands' options.
DIRECT_VARIABLES = {
    "EVX_SECRETS_DIR": "settings as files (service/settings.py)",
    "EVX_LOG_KEY": "the client's log key for one run",
    "EVX_STATE_DIR": "the client's trust state",
    "EVX_CONFIG_DIR": "the client's configuration",
    "EVX_POLICY": "the witness policy auditors verify against",
    "EVX_DEBUG": "tracebacks of internal errors",
}
#: Variables of the development tooling (./dev, the tests, bench/), not of evx itself.
TOOLING_VARIABLES = ("EVX_VENV", "EVX_REQUIRE_BACKENDS")
TOOLING_PREFIXES = ("EVX_TEST_", "EVX_BENCH_")  # the tests' and benchmarks' own knobs

#: How close a name must be to a known one to be suggested (difflib's ratio).
SUGGESTION_CUTOFF = 0.75


def setting_variables() -> set[str]:
    """``EVX_<NAME>`` of every field of the settings table."""
    from service.settings import Settings

    return {f"EVX_{name.upper()}" for name in Settings.model_fields}


def option_variables() -> set[str]:
    """Every ``envvar`` of every option of every registered command."""
    import inspect

    from evx.cli.app import registered_callbacks

    found: set[str] = set()
    for callback in registered_callbacks():
        for parameter in inspect.signature(callback).parameters.values():
            envvar = getattr(parameter.default, "envvar", None)  # typer's OptionInfo
            if isinstance(envvar, str):
                found.add(envvar)
            elif envvar:
                found.update(envvar)
    return found


def known_variables() -> set[str]:
    """Every ``EVX_*`` name something in evx (or its tooling) reads."""
    return (setting_variables() | option_variables() | set(DIRECT_VARIABLES)
            | set(TOOLING_VARIABLES))


def unknown_variables(environ: Mapping[str, str], known: set[str]) -> list[tuple[str, str | None]]:
    """``EVX_*`` names in ``environ`` that are not in ``known``, each with the closest known name
    (or ``None``)."""
    unknown = sorted(name for name in environ if name.startswith("EVX_") and name not in known
                     and not name.startswith(TOOLING_PREFIXES))
    return [(name, next(iter(difflib.get_close_matches(name, sorted(known), n=1,
                                                       cutoff=SUGGESTION_CUTOFF)), None))
            for name in unknown]


def warn_unknown_variables(environ: Mapping[str, str] | None = None) -> None:
    """One line on stderr per unknown ``EVX_*`` variable of ``environ`` (default: ours); a
    JSON log line each when ``EVX_LOG_FORMAT=json`` (a collector parses every line)."""
    environ = os.environ if environ is None else environ
    as_log = environ.get("EVX_LOG_FORMAT") == "json"
    for name, suggestion in unknown_variables(environ, known_variables()):
        if as_log:
            sys.stderr.write(json.dumps({"event": "unknown_setting", "level": "warning",
                                         "variable": name, "suggestion": suggestion}) + "\n")
            continue
        also = f" (did you mean {suggestion}?)" if suggestion else ""
        sys.stderr.write(f"warning: {name} is not an evx setting and is ignored{also}\n")
    sys.stderr.flush()


def require_data_folder(command_name: str, settings: Any = None) -> None:
    """Raise :class:`DataFolderMissing` unless the configured data folder exists."""
    from service.datafolder import data_dir_exists, data_dir_of
    from service.settings import load_settings

    settings = settings if settings is not None else load_settings()
    if data_dir_exists(settings):
        return
    default = type(settings).model_fields["data_dir"].default
    source = "EVX_DATA_DIR" if os.environ.get("EVX_DATA_DIR") else \
        "EVX_DATA_DIR is not set: the default, ./data" if settings.data_dir == default else \
        "evx_data_dir in EVX_SECRETS_DIR"
    raise DataFolderMissing(
        f"no data folder at {data_dir_of(settings)} ({source}); evx {command_name} does not "
        f"create one",
        hint="Initialise it with `evx init` (keys, database, objects), or set EVX_DATA_DIR to "
             "the data folder you meant.")


@contextmanager
def server_side(command_name: str, *, data_folder: bool = True) -> Iterator[None]:
    """Run a server-side command: warnings first, the data folder checked (``data_folder``),
    then the body under a private umask (restored after, for tests that run commands in
    process)."""
    from service.datafolder import PRIVATE_UMASK

    warn_unknown_variables()
    if data_folder:
        require_data_folder(command_name)
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)
