"""The one table from error class to exit status, applied to every `evx` command.

Every command is registered through :func:`evx.cli.app.command`, which runs it under
:func:`failure_for`: whatever a command raises -- a client error, a server domain error, a
local file-system error, a click usage error, a bad setting -- becomes one line on stderr
(and one JSON document on stdout with ``--json``) and the exit status of :data:`EXIT_TABLE`.
Nothing else decides an exit status, and no traceback reaches the user.

Server-side error classes are named as ``"module:Class"`` and resolved only when their module
is already loaded: a class that was never imported cannot have been raised, and the client
never imports the service to find out.
"""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_INTEGRITY = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_DENIED = 4
EXIT_UNAVAILABLE = 5
EXIT_LOCAL = 6
EXIT_INTERNAL = 7
EXIT_INTERRUPTED = 130

#: What each exit status means (the README's table is checked against this).
EXIT_MEANINGS: dict[int, str] = {
    EXIT_OK: "done (and verified, where the command verifies)",
    EXIT_INTEGRITY: "verification or integrity failure of the evidence under check: a digest, "
                    "proof or signature does not match, an export or checkpoint is truncated "
                    "or malformed, a rule of the exchange is broken, the log key changed, the "
                    "ledger is inconsistent with what this machine saw",
    EXIT_USAGE: "usage: bad arguments, settings or input files, or a request refused as "
                "invalid or in conflict (package sealed, not sealed, item exists, authority "
                "exists), or the server extra is not installed, or a server-side command's "
                "data folder does not exist (evx init creates it)",
    EXIT_AUTH: "authentication: no token, or it expired or was refused",
    EXIT_DENIED: "not found or not allowed, including a share that expired or was revoked and "
                 "an unknown authority or key",
    EXIT_UNAVAILABLE: "the server, its database, store or ledger is unavailable, or the "
                      "connection failed (after the retries)",
    EXIT_LOCAL: "this machine's file system refused: disk full, permission denied, -o names a "
                "file (partial downloads are kept)",
    EXIT_INTERNAL: "a bug in evx: an unexpected error (the message names it; report it)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); run the same command again to resume",
}

EXIT_CODES_HELP = (
    "Exit status: 0 ok; 1 verification/integrity failure; 2 usage, bad settings, invalid "
    "request or no data folder; 3 authentication (missing, expired or refused token); 4 not "
    "found or not allowed; 5 server, database, store or ledger unavailable; 6 local file system "
    "(disk full, permission, -o is a file); 7 internal error; 130 interrupted."
)


@dataclass(frozen=True)
class ExitRule:
    """Errors of class ``error`` (``"module:Class"``) exit with ``code``."""

    error: str
    code: int
    slug: str | None = None  # default: the error's own slug, else its class name in kebab case
    hint: str | None = None


_SETTINGS_HINT = "Every EVX_* setting is described in docs/operations.md."
_REGISTRY_HINT = "See evx authority list / evx authority show ID."

#: The table. The most specific class in an error's MRO wins.
EXIT_TABLE: tuple[ExitRule, ...] = (
    # the client library
    ExitRule("evx.client.errors:ClientError", EXIT_USAGE),
    ExitRule("evx.client.errors:UsageError", EXIT_USAGE),
    ExitRule("evx.client.errors:LocalFileError", EXIT_LOCAL),
    ExitRule("evx.client.errors:IntegrityFailure", EXIT_INTEGRITY),
    ExitRule("evx.client.errors:AuthenticationError", EXIT_AUTH),
    ExitRule("evx.client.errors:DeniedError", EXIT_DENIED),
    ExitRule("evx.client.errors:UnavailableError", EXIT_UNAVAILABLE),
    # the command line's own parsing (click/typer), also when raised inside a command
    # (Typer >= 0.22 carries its own copy of click as typer._click)
    ExitRule("click.exceptions:UsageError", EXIT_USAGE, "usage"),
    ExitRule("click.exceptions:FileError", EXIT_USAGE, "usage"),
    ExitRule("typer._click.exceptions:UsageError", EXIT_USAGE, "usage"),
    ExitRule("typer._click.exceptions:FileError", EXIT_USAGE, "usage"),
    # offline verification
    ExitRule("custody.errors:VerificationError", EXIT_INTEGRITY, None,
             "Keep the file as evidence and report it."),
    # this machine
    ExitRule("builtins:OSError", EXIT_LOCAL, "local-file-error"),
    ExitRule("builtins:ConnectionError", EXIT_UNAVAILABLE, "connection-failed"),
    ExitRule("builtins:TimeoutError", EXIT_UNAVAILABLE, "connection-failed"),
    # server-side commands: settings, database, store, ledger, registry, packages
    ExitRule("pydantic_core:ValidationError", EXIT_USAGE, "bad-settings", _SETTINGS_HINT),
    ExitRule("sqlalchemy.exc:OperationalError", EXIT_UNAVAILABLE, "database-unavailable",
             "Check EVX_DATABASE_URL and that the database server is running."),
    ExitRule("alembic.util.exc:CommandError", EXIT_USAGE, "schema",
             "The database's schema revision is not one this code knows."),
    ExitRule("storage.errors:StorageError", EXIT_UNAVAILABLE),
    ExitRule("storage.errors:IntegrityError", EXIT_INTEGRITY),
    ExitRule("storage.errors:ObjectNotFound", EXIT_INTEGRITY),
    ExitRule("storage.errors:BackendUnavailable", EXIT_UNAVAILABLE),
    ExitRule("storage.errors:KeySourceError", EXIT_USAGE, None,
             "Check EVX_KEK_DIR (evx init creates the keys of a new data folder)."),
    ExitRule("service.ledger.errors:LedgerError", EXIT_UNAVAILABLE),
    ExitRule("service.ledger.errors:LedgerUnavailable", EXIT_UNAVAILABLE),
    ExitRule("service.ledger.errors:LedgerCorrupted", EXIT_INTEGRITY),
    ExitRule("service.ledger.errors:InvalidEvent", EXIT_USAGE),
    ExitRule("service.ledger.errors:EntryNotFound", EXIT_DENIED),
    ExitRule("service.ledger.errors:InvalidProofRequest", EXIT_USAGE),
    ExitRule("service.ledger.errors:LogKeyError", EXIT_USAGE, None,
             "Check EVX_LOG_KEY_FILE (evx init creates the log key of a new data folder)."),
    ExitRule("service.identity.errors:IdentityError", EXIT_USAGE),
    ExitRule("service.identity.errors:AuthenticationFailed", EXIT_AUTH),
    ExitRule("service.identity.errors:RegistryError", EXIT_USAGE, None, _REGISTRY_HINT),
    ExitRule("service.identity.errors:UnknownAuthority", EXIT_DENIED, None, _REGISTRY_HINT),
    ExitRule("service.identity.errors:UnknownKey", EXIT_DENIED, None, _REGISTRY_HINT),
    ExitRule("service.identity.errors:AuthorityExists", EXIT_USAGE, None, _REGISTRY_HINT),
    ExitRule("service.identity.errors:NoSigningKey", EXIT_USAGE, None,
             "Only keys added with --generate-key have a private key in the data folder."),
    ExitRule("service.packages.errors:PackageError", EXIT_USAGE),
    ExitRule("service.packages.errors:PackageNotFound", EXIT_DENIED),
    ExitRule("service.packages.errors:ItemNotFound", EXIT_DENIED),
    ExitRule("service.packages.errors:AccessDenied", EXIT_DENIED),
    ExitRule("service.packages.errors:DigestMismatch", EXIT_INTEGRITY),
    ExitRule("evx.protocol.names:InvalidName", EXIT_USAGE, "bad-name"),
)

_LOCAL_HINTS = {
    errno.ENOSPC: "Free some space (or choose another -o), then run the same command again: "
                  "what was already received is kept.",
    errno.EDQUOT: "Your disk quota is exhausted; free some space, then run the same command "
                  "again: what was already received is kept.",
    errno.EFBIG: "The file system (or a ulimit) does not allow a file that large here; choose "
                 "another -o. What was already received is kept.",
    errno.EACCES: "You may not write there; choose another path or fix its permissions.",
    errno.EPERM: "You may not write there; choose another path or fix its permissions.",
    errno.EROFS: "That file system is read-only; choose another path.",
    errno.EEXIST: "A file is in the way; move it or choose another path.",
    errno.ENOTDIR: "A path component is a file, not a directory; choose another path.",
    errno.EISDIR: "That is a directory; give a file name.",
    errno.ENOENT: "Check the path.",
}


@dataclass
class Failure:
    """How one error is reported: exit status, slug, one-line message, advice, details."""

    code: int
    slug: str
    message: str
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ok": False, "error": self.slug, "message": self.message, "hint": self.hint,
                "exit_code": self.code, **self.details}


def _resolve(spec: str) -> type[BaseException] | None:
    module_name, _, name = spec.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        return None
    found = getattr(module, name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def rule_for(exc: BaseException) -> ExitRule | None:
    """The table's rule for ``exc`` (most specific class first), or ``None``."""
    rules: dict[type[BaseException], ExitRule] = {}
    for rule in EXIT_TABLE:
        klass = _resolve(rule.error)
        if klass is not None:
            rules[klass] = rule
    for klass in type(exc).__mro__:
        if klass in rules:
            return rules[klass]
    return None


def exit_code_for(exc: BaseException) -> int:
    """The exit status of a command that failed with ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    rule = rule_for(exc)
    return EXIT_INTERNAL if rule is None else rule.code


def _kebab(name: str) -> str:
    out = [name[0].lower()]
    for ch in name[1:]:
        out.append(f"-{ch.lower()}" if ch.isupper() else ch)
    return "".join(out)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _message(exc: BaseException) -> str:
    from evx.client.errors import ClientError

    if isinstance(exc, ClientError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        also = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return f"{exc.strerror}{where}{also}"
    pydantic = _resolve("pydantic_core:ValidationError")
    if pydantic is not None and isinstance(exc, pydantic):
        errors = exc.errors()  # type: ignore[attr-defined]
        parts = []
        for e in errors[:3]:
            loc = ".".join(str(p) for p in e.get("loc", ()))
            name = f"EVX_{loc.upper()}" if loc else "settings"
            parts.append(f"{name}: {e.get('msg', '')}")
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return "bad setting " + "; ".join(parts) + more
    verification = _resolve("custody.errors:VerificationError")
    if verification is not None and isinstance(exc, verification):
        return f"NOT VERIFIED: {type(exc).__name__}: {exc}"
    if callable(getattr(exc, "format_message", None)):  # click's exceptions
        return str(exc.format_message())  # type: ignore[attr-defined]
    text = str(exc)
    return text if text else type(exc).__name__


def failure_for(exc: BaseException) -> Failure:
    """How ``exc`` is reported, by the table."""
    from evx.client.errors import ClientError

    if isinstance(exc, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, "interrupted", "interrupted",
                       "Run the same command again to resume.")
    rule = rule_for(exc)
    message = _one_line(_message(exc))
    if rule is None:
        return Failure(EXIT_INTERNAL, "internal",
                       f"unexpected error {type(exc).__module__}.{type(exc).__name__}: "
                       f"{message}", "This is a bug in evx: please report this line. "
                                     "EVX_DEBUG=1 shows the traceback.")
    if isinstance(exc, ClientError):
        return Failure(rule.code, exc.slug, message, exc.hint or rule.hint, dict(exc.details))
    hint = rule.hint
    details: dict[str, Any] = {}
    if isinstance(exc, OSError):
        hint = _LOCAL_HINTS.get(exc.errno or 0, hint)
        if exc.errno is not None:
            details["errno"] = errno.errorcode.get(exc.errno, str(exc.errno))
    verification = _resolve("custody.errors:VerificationError")
    if verification is not None and isinstance(exc, verification):
        details["verified"] = False
        details["reason"] = getattr(exc, "reason", str(exc))
        for attribute in ("index", "line"):  # where in the untrusted data
            details[attribute] = getattr(exc, attribute, None)
        violations = getattr(exc, "violations", ())
        if violations:
            details["violations"] = [{"index": v.index, "rule": v.rule, "reason": v.reason}
                                     for v in violations]
    return Failure(rule.code, rule.slug or _kebab(type(exc).__name__), message, hint, details)
