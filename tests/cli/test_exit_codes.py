"""The one exit-code table (evx/cli/exits.py): every command, every error class -> its code.

Each command's body is replaced by one that raises, in turn, every kind of error a command can
meet (client, server domain, local file system, settings, parsing); the command must exit with
the table's code, print one line (and advice) on stderr, and with --json one JSON document on
stdout -- never a traceback.
"""

from __future__ import annotations

import errno
import importlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import typer

from custody import errors as custody_errors
from evx.cli import app as registry
from evx.cli import exits
from evx.cli.main import build, run
from evx.client import errors as client
from service.identity import errors as identity
from service.ledger import errors as ledger
from service.packages import errors as packages
from storage import errors as storage


def _settings_error() -> Exception:
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        Settings(log_format="jsonl")
    except ValidationError as exc:
        return exc
    raise AssertionError("the setting was accepted")


def _database_error() -> Exception:
    import sqlalchemy as sa

    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        engine.connect()
    except sa.exc.OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("connected to port 1")


#: (what is raised, the exit status the table gives it)
CASES: list[tuple[Callable[[], BaseException], int]] = [
    (lambda: client.UsageError("bad"), exits.EXIT_USAGE),
    (lambda: client.ServerExtraMissing("no server"), exits.EXIT_USAGE),
    (lambda: client.LocalFileError("disk"), exits.EXIT_LOCAL),
    (lambda: client.IntegrityFailure("tampered"), exits.EXIT_INTEGRITY),
    (lambda: client.LogKeyChanged("key"), exits.EXIT_INTEGRITY),
    (lambda: client.LedgerInconsistent("fork"), exits.EXIT_INTEGRITY),
    (lambda: client.AuthenticationError("token"), exits.EXIT_AUTH),
    (lambda: client.DeniedError("no"), exits.EXIT_DENIED),
    (lambda: client.UnavailableError("down"), exits.EXIT_UNAVAILABLE),
    (lambda: typer.BadParameter("--x is wrong"), exits.EXIT_USAGE),
    (lambda: custody_errors.FormatError("not canonical", index=3), exits.EXIT_INTEGRITY),
    (lambda: custody_errors.RollbackError("smaller", index=5), exits.EXIT_INTEGRITY),
    (lambda: OSError(errno.ENOSPC, "No space left on device", "/out/f"), exits.EXIT_LOCAL),
    (lambda: PermissionError(errno.EACCES, "Permission denied", "/out"), exits.EXIT_LOCAL),
    (lambda: FileExistsError(errno.EEXIST, "File exists", "/out"), exits.EXIT_LOCAL),
    (lambda: NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/x"), exits.EXIT_LOCAL),
    (lambda: ConnectionRefusedError(errno.ECONNREFUSED, "refused"), exits.EXIT_UNAVAILABLE),
    (_settings_error, exits.EXIT_USAGE),
    (_database_error, exits.EXIT_UNAVAILABLE),
    (lambda: storage.AuthenticationFailed("chunk 3"), exits.EXIT_INTEGRITY),
    (lambda: storage.ObjectNotFound("obj"), exits.EXIT_INTEGRITY),
    (lambda: storage.BackendUnavailable("s3 down"), exits.EXIT_UNAVAILABLE),
    (lambda: storage.KeySourceError("no KEK"), exits.EXIT_USAGE),
    (lambda: ledger.LedgerUnavailable("db"), exits.EXIT_UNAVAILABLE),
    (lambda: ledger.LedgerCorrupted("root"), exits.EXIT_INTEGRITY),
    (lambda: ledger.LogKeyError("unreadable"), exits.EXIT_USAGE),
    (lambda: identity.UnknownAuthority("XX"), exits.EXIT_DENIED),
    (lambda: identity.UnknownKey("DE-BKA", "k1"), exits.EXIT_DENIED),
    (lambda: identity.AuthorityExists("DE-BKA"), exits.EXIT_USAGE),
    (lambda: identity.AuthorityRejected("bad id"), exits.EXIT_USAGE),
    (lambda: identity.KeyRejected("private key"), exits.EXIT_USAGE),
    (lambda: identity.NoSigningKey("none"), exits.EXIT_USAGE),
    (lambda: identity.InvalidToken("expired"), exits.EXIT_AUTH),
    (lambda: packages.PackageNotFound("p"), exits.EXIT_DENIED),
    (lambda: packages.ShareExpired("p"), exits.EXIT_DENIED),
    (lambda: packages.PackageSealed("p"), exits.EXIT_USAGE),
    (lambda: packages.DigestMismatch("x"), exits.EXIT_INTEGRITY),
    (lambda: RuntimeError("a bug"), exits.EXIT_INTERNAL),
    (lambda: KeyboardInterrupt(), exits.EXIT_INTERRUPTED),
]


@pytest.fixture(autouse=True)
def _server_side(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Server-side commands find a data folder (else they refuse before the body runs) and no
    stray EVX_* variable (else a warning line precedes the error)."""
    import os

    for name in [n for n in os.environ if n.startswith("EVX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EVX_DATA_DIR", str(tmp_path))


def _leaves(command: Any, path: str = "evx") -> Iterator[tuple[str, Any]]:
    children = getattr(command, "commands", None)
    if children is None:
        yield path, command
        return
    for name, child in children.items():
        yield from _leaves(child, f"{path} {name}")


COMMANDS = sorted(_leaves(build()), key=lambda pair: pair[0])


def test_every_command_is_registered_through_the_one_decorator() -> None:
    assert len(COMMANDS) >= 20
    unguarded = [path for path, command in COMMANDS
                 if not getattr(getattr(command.callback, "__wrapped__", None),
                                "__evx_guarded__", False)]
    assert unguarded == []


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_error_class_exits_with_its_code(path: str, command: Any,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    guarded = command.callback.__wrapped__
    for make, code in CASES:
        error = make()

        def body(*args: Any, _error: BaseException = error, **kwargs: Any) -> None:
            raise _error

        monkeypatch.setattr(guarded, "__wrapped__", body)
        with pytest.raises(typer.Exit) as exited:
            guarded(as_json=True)
        captured = capsys.readouterr()
        assert exited.value.exit_code == code, (path, repr(error))
        document = json.loads(captured.out)
        assert document["ok"] is False and document["exit_code"] == code, (path, document)
        assert document["message"] and document["error"]
        lines = captured.err.splitlines()
        assert lines[0].startswith("error: ") and 1 <= len(lines) <= 2, (path, captured.err)
        assert "Traceback" not in captured.err


def test_every_domain_error_class_has_a_rule() -> None:
    """A new error class of any domain falls under a rule, never into 'internal error'."""
    bases = [client.ClientError, custody_errors.VerificationError, storage.StorageError,
             ledger.LedgerError, identity.IdentityError, packages.PackageError]

    def subclasses(klass: type) -> Iterator[type]:
        yield klass
        for sub in klass.__subclasses__():
            yield from subclasses(sub)

    unruled = [f"{k.__module__}.{k.__qualname__}" for base in bases
               for k in subclasses(base) if exits.rule_for(k.__new__(k)) is None]
    assert unruled == []


def test_every_rule_names_a_real_class() -> None:
    for rule in exits.EXIT_TABLE:
        module, _, name = rule.error.partition(":")
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError:
            assert module.startswith(("click", "typer._click")), rule
            continue
        assert isinstance(getattr(loaded, name, None), type), rule


def test_usage_errors_found_while_parsing_give_one_json_document(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["package", "list", "--limit", "0", "--json"]) == exits.EXIT_USAGE
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["error"] == "usage" and "--limit" in document["message"]
    assert "See: evx package list --help" in captured.err
    assert run(["pakage", "--json"]) == exits.EXIT_USAGE
    assert "Did you mean 'package'" in json.loads(capsys.readouterr().out)["message"]


def test_server_commands_say_how_to_install_the_server(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "SERVER_MODULES", (*registry.SERVER_MODULES, "no_such_mod"))
    assert run(["db", "upgrade"]) == exits.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert 'pip install "evidence-exchange[server]"' in err[0] and "db upgrade" in err[0]


def test_the_readme_documents_the_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("Exit status of every command", 1)[1].split("\n\n", 2)[1]
    codes = [int(line.split("|")[1]) for line in section.splitlines()
             if line.startswith("|") and line.split("|")[1].strip().isdigit()]
    assert codes == sorted(exits.EXIT_MEANINGS)
