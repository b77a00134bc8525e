"""The one way to add an `evx` command: :func:`command` (and :func:`group` for a command group).

A command registered here runs under the exit-code table (:mod:`evx.cli.exits`): whatever it
raises is reported as one line on stderr -- plus one JSON document on stdout when it was given
``--json`` -- and exits with the table's status. Server-side commands (``server=True``) first
check that the ``server`` extra is installed and say how to install it when it is not, then run
under :func:`evx.cli.preflight.server_side`: unknown ``EVX_*`` variables warned about, a missing
data folder refused (only ``evx init`` creates one), a private umask.

Command modules are listed in :mod:`evx.cli.commands`; importing one registers its commands
here, and :func:`mount` hangs them all on a Typer app (the root ``evx`` or a test's).
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import typer

from evx.cli.exits import EXIT_CODES_HELP, EXIT_INTERNAL, failure_for

F = TypeVar("F", bound=Callable[..., Any])

#: Help panels, in the order of the walk-through: what officers run first comes first.
PANEL_EVIDENCE = "Evidence (investigators, recipients)"
PANEL_AUDIT = "Custody and ledger (auditors)"
PANEL_SERVER = "Server administration (needs evidence-exchange[server])"

#: Modules only the ``server`` extra brings (a server-side command needs all of them).
SERVER_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings",
                  "structlog", "jose", "minio", "prometheus_client")
SERVER_INSTALL = 'pip install "evidence-exchange[server]"'


@dataclass
class _Group:
    app: typer.Typer
    panel: str | None
    commands: list[str] = field(default_factory=list)


_GROUPS: dict[str, _Group] = {}
_ROOT_COMMANDS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


def group(path: str, help: str, *, panel: str | None = None) -> typer.Typer:
    """Declare the command group ``path`` (``"ledger"``, ``"authority key"``); idempotent, so
    several modules may add commands to one group."""
    if path in _GROUPS:
        return _GROUPS[path].app
    sub = typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)
    parent, _, name = path.rpartition(" ")
    if parent:
        if parent not in _GROUPS:
            raise ValueError(f"declare the group {parent!r} before {path!r}")
        _GROUPS[parent].app.add_typer(sub, name=name, help=help)
    _GROUPS[path] = _Group(sub, panel)
    return sub


def command(name: str, *, group: str | None = None, server: bool = False,
            data_folder: bool = True, panel: str | None = None,
            **options: Any) -> Callable[[F], F]:
    """Register the decorated function as ``evx [GROUP] NAME``, run under the exit-code table.

    ``server=True``: a server-side command, refused with the install advice when the
    ``server`` extra is missing, and (unless ``data_folder=False``: ``evx init`` itself) when
    its data folder does not exist. Other keyword arguments go to Typer's ``command``.
    """

    def decorate(function: F) -> F:
        guarded = guard(function, server=server, data_folder=data_folder,
                        name=f"{group} {name}" if group else name)
        options.setdefault("epilog", EXIT_CODES_HELP)
        if group is None:
            options.setdefault("rich_help_panel", panel)
            _ROOT_COMMANDS[name] = (guarded, options)
        else:
            if group not in _GROUPS:
                raise ValueError(f"declare the group {group!r} before its commands")
            _GROUPS[group].app.command(name, **options)(guarded)
            _GROUPS[group].commands.append(name)
        return function

    return decorate


def mount(app: typer.Typer) -> None:
    """Hang every registered top-level command and group on ``app``."""
    for name, (function, options) in _ROOT_COMMANDS.items():
        app.command(name, **options)(function)
    for path, declared in _GROUPS.items():
        if " " not in path:
            app.add_typer(declared.app, name=path, rich_help_panel=declared.panel)


def registered_callbacks() -> list[Callable[..., Any]]:
    """The function of every registered command (their options name the variables they read)."""
    callbacks = [function for function, _ in _ROOT_COMMANDS.values()]
    for declared in _GROUPS.values():
        callbacks.extend(info.callback for info in declared.app.registered_commands
                         if info.callback is not None)
    return callbacks


def require_server_extra(command_name: str) -> None:
    """Raise :class:`ServerExtraMissing` unless the server's libraries are importable."""
    from evx.client.errors import ServerExtraMissing

    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ServerExtraMissing(
            f"evx {command_name} runs the server side, which is not installed here: "
            f"{SERVER_INSTALL} (missing: {', '.join(missing)})")


def json_requested(kwargs: dict[str, Any]) -> bool:
    return bool(kwargs.get("as_json")) or kwargs.get("output_format") == "json"


def json_in_arguments(args: list[str]) -> bool:
    """``--json`` or ``-o json`` on a command line that did not parse (usage errors)."""
    pairs = itertools.pairwise(args)
    return ("--json" in args or any(a in ("-o", "--output") and b == "json" for a, b in pairs)
            or any(a in ("-ojson", "--output=json") for a in args))


def report(exc: BaseException, *, as_json: bool, hint: str | None = None) -> int:
    """Report ``exc`` by the table (one line, advice, JSON with --json); its exit status."""
    from evx.cli.render import Output

    failure = failure_for(exc)
    if hint is not None and failure.hint is None:
        failure.hint = hint
    if failure.code == EXIT_INTERNAL and os.environ.get("EVX_DEBUG"):
        traceback.print_exception(exc)
    Output(as_json=as_json).failure(failure)
    return failure.code


def guard(function: F, *, server: bool = False, data_folder: bool = True,
          name: str = "") -> F:
    """``function`` run under the exit-code table (see :func:`command`)."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            if not server:
                # through __wrapped__, so the exit-code table test can put any error in the body
                return guarded.__wrapped__(*args, **kwargs)  # type: ignore[attr-defined]
            require_server_extra(name or function.__name__)
            from evx.cli.preflight import server_side

            with server_side(name or function.__name__, data_folder=data_folder):
                return guarded.__wrapped__(*args, **kwargs)  # type: ignore[attr-defined]
        except typer.Exit:
            raise
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the table decides; nothing escapes
            raise typer.Exit(report(exc, as_json=json_requested(kwargs))) from None

    guarded.__evx_guarded__ = True  # type: ignore[attr-defined]
    return guarded  # type: ignore[return-value]
