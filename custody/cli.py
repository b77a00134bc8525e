"""``python -m custody verify``: the offline verifier a partner authority runs.

Needs nothing but the standard library and ``cryptography``.  This module does the file reading;
the checks themselves are :mod:`custody.verify`'s pure functions.

Exit codes: 0 the export verified and every package keeps the rules of the exchange; 1 the
evidence under check failed: anything wrong with the export or the saved checkpoint, whether
tampering or malformation (truncation, content after the checkpoint, duplicate keys, a header
that disagrees, a bad signature, a rollback, a broken rule, ...) -- a monitor alerting on 1
misses nothing; 2 usage: bad arguments, a malformed ``--key``, a file that cannot be read.
Anything but 0 means the export is NOT verified.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from custody.checkpoint import Checkpoint
from custody.errors import FormatError, VerificationError
from custody.export import MAX_LINE_BYTES, ExportRecord, read_export_line
from custody.note import MAX_NOTE_BYTES, VerifierKey
from custody.rules import RulesViolated, RulesWalk, RuleViolation
from custody.verify import VerifiedLedger, verify_export_lines

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "available_cpus",
    "check_file_rules",
    "load_verifier_key",
    "main",
    "verify_file",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# A verifier key is ~70 bytes; a file much larger is not one.
MAX_KEY_FILE_BYTES = 4096


def load_verifier_key(value: str) -> VerifierKey:
    """A verifier key given inline (``name+hex+base64``) or as the path of a file holding one.

    Raises:
        FormatError: Not a verifier key.
        OSError: The file cannot be read.
    """
    if "+" in value and not Path(value).exists():
        return VerifierKey.parse(value)
    with open(value, "rb") as handle:
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise FormatError(f"key file is larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        return VerifierKey.parse(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise FormatError("key file is not UTF-8") from None


def load_checkpoint(path: str | Path, verifier_key: VerifierKey) -> Checkpoint:
    """Read a saved signed checkpoint and verify it with ``verifier_key``.

    Raises:
        FormatError, SignatureError: The file is not a checkpoint signed by the key.
        OSError: The file cannot be read.
    """
    with open(path, "rb") as handle:
        data = handle.read(MAX_NOTE_BYTES + 1)
    return Checkpoint.verify(data, verifier_key)


def _bounded_lines(handle: BinaryIO) -> Iterator[bytes]:
    # readline with a limit: a hostile file with one endless line costs at most MAX_LINE_BYTES+1.
    while line := handle.readline(MAX_LINE_BYTES + 1):
        yield line


def available_cpus() -> int:
    """CPUs this process may run on (the default number of verification processes)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def verify_file(
    export_path: str | Path,
    verifier_key: VerifierKey,
    trusted_checkpoint: Checkpoint | None = None,
    *,
    workers: int = 1,
) -> VerifiedLedger:
    """Verify the export file at ``export_path`` (streaming; memory independent of its length).

    Args:
        workers: Processes checking entry lines (see :func:`custody.verify.verify_export_lines`).

    Raises:
        VerificationError: Any subclass -- the export does not verify (see ``custody.verify``).
        OSError: The file cannot be read.
    """
    with open(export_path, "rb") as handle:
        return verify_export_lines(
            _bounded_lines(handle),
            verifier_key,
            trusted_checkpoint=trusted_checkpoint,
            workers=workers,
        )


def check_file_rules(export_path: str | Path) -> list[RuleViolation]:
    """The rules of the exchange (:mod:`custody.rules`) over every package of an export file.

    Read after :func:`verify_file` succeeded: the entries are then the signed ones.  Entries
    without a package are skipped unparsed.

    Raises:
        VerificationError: A line cannot be read (the export changed since it was verified).
        OSError: The file cannot be read.
    """
    walk = RulesWalk()
    with open(export_path, "rb") as handle:
        for number, line in enumerate(_bounded_lines(handle), start=1):
            if number == 1 or b'"package":null' in line:
                continue
            item = read_export_line(line, number, 0, after_checkpoint=False)
            if isinstance(item, ExportRecord):
                walk.add(item.entry)
    return walk.violations


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m custody",
        description="Verify a custody ledger export offline, trusting only the log's public key.",
        epilog="Exit status: 0 verified; 1 the export or checkpoint does not verify (tampered, "
        "malformed, a broken rule); 2 usage (bad arguments, a malformed key, an unreadable file).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="verify an export file")
    verify.add_argument("export", help="the JSON Lines export file")
    verify.add_argument(
        "--key", required=True, help="verifier key name+hex+base64, or a file holding it"
    )
    verify.add_argument(
        "--checkpoint", help="a signed checkpoint saved from an earlier verification"
    )
    verify.add_argument("--save-checkpoint", help="write the newly verified signed checkpoint here")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.add_argument("--workers", type=_positive_int, default=None,
                        help="processes checking entry lines (default: the number of CPUs)")
    return parser


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _report_failure(exc: Exception, as_json: bool, out: TextIO, err: TextIO) -> None:
    violations = exc.violations if isinstance(exc, RulesViolated) else ()
    if as_json:
        result = {"verified": False, "error": type(exc).__name__,
                  "index": getattr(exc, "index", None), "line": getattr(exc, "line", None),
                  "reason": getattr(exc, "reason", str(exc))}
        if violations:
            result["violations"] = [{"index": v.index, "rule": v.rule, "reason": v.reason}
                                    for v in violations]
        out.write(json.dumps(result) + "\n")
    elif violations:
        err.write(f"NOT VERIFIED: {len(violations)} rule violation(s)\n")
        for violation in violations:
            err.write(f"  {violation}\n")
    else:
        err.write(f"NOT VERIFIED: {type(exc).__name__}: {exc}\n")


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; return the exit status (does not call ``sys.exit``)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        key = load_verifier_key(args.key)
    except (OSError, VerificationError) as exc:  # the key is the caller's argument, not evidence
        _report_failure(exc, args.json, out, err)
        return EXIT_USAGE
    try:
        trusted = load_checkpoint(args.checkpoint, key) if args.checkpoint else None
        result = verify_file(args.export, key, trusted, workers=args.workers or available_cpus())
        violations = check_file_rules(args.export)
        if violations:
            raise RulesViolated(violations)
    except VerificationError as exc:  # malformed or tampered: the evidence fails either way
        _report_failure(exc, args.json, out, err)
        return EXIT_FAILED
    except OSError as exc:
        _report_failure(exc, args.json, out, err)
        return EXIT_USAGE
    if args.save_checkpoint:
        Path(args.save_checkpoint).write_text(result.checkpoint_note, encoding="utf-8")
    root = base64.b64encode(result.root).decode()
    if args.json:
        out.write(
            json.dumps(
                {
                    "verified": True,
                    "origin": result.origin,
                    "tree_size": result.tree_size,
                    "entries": result.entry_count,
                    "packages": result.package_count,
                    "root": root,
                }
            )
            + "\n"
        )
    else:
        out.write(f"VERIFIED {result.entry_count} entries of {result.origin}\n"
                  f"  tree size {result.tree_size}, root {root}\n"
                  f"  {result.package_count} packages; checkpoint signed by {key}\n")
    return EXIT_OK
