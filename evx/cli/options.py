"""The options client commands share, and the trust state they use."""

from __future__ import annotations

import os

import typer

from custody.note import VerifierKey
from evx.cli.render import Output
from evx.client.errors import UsageError
from evx.client.http import DEFAULT_RETRIES, DEFAULT_URL, Api, Retry
from evx.client.state import TrustState, default_state_dir

URL = typer.Option(DEFAULT_URL, "--url", envvar="EVX_URL", show_envvar=True,
                   help="The evidence-exchange server.")
TOKEN = typer.Option(None, "--token", envvar="EVX_TOKEN", show_envvar=True,
                     show_default=False,
                     help="Your bearer token (prefer the environment variable: command lines "
                          "are visible to other users).")
JSON = typer.Option(False, "--json", help="One JSON document on stdout, for scripts.")
OUTPUT = typer.Option("table", "--output", "-o", metavar="table|json|tsv",
                      help="table (default); json: one JSON document, as --json; tsv: a "
                           "header line, then one tab-separated line per row with every "
                           "column (invisible characters, tabs and newlines escaped as "
                           "names are displayed: \\x09).")
WIDE = typer.Option(False, "--wide", help="Every column, none folded: lines as long as they "
                                          "need (for a wide terminal, or less -S).")
RETRIES = typer.Option(DEFAULT_RETRIES, "--retries", min=0, envvar="EVX_RETRIES",
                       show_envvar=True,
                       help="Tries again after a connection error or a 429/502/503/504 (waiting "
                            "as the server's Retry-After says, else backing off with jitter); "
                            "0 never retries.")


def connect(url: str, token: str | None, output: Output, retries: int = DEFAULT_RETRIES) -> Api:
    """The command's connection to the server; each retry is announced on stderr."""
    return Api(url, token, Retry(retries=retries, on_retry=output.warn))


def trust_state(api: Api) -> TrustState:
    """This machine's trust in ``api``'s server; ``EVX_LOG_KEY`` (a verifier key, or a file
    holding one) replaces the pinned log key for the run.

    Raises:
        UsageError: ``EVX_LOG_KEY`` is set but is not a verifier key.
    """
    configured = os.environ.get("EVX_LOG_KEY")
    return TrustState(default_state_dir(), api.origin,
                      log_key=parse_log_key(configured) if configured else None)


def parse_log_key(value: str) -> VerifierKey:
    """A verifier key given inline (``name+hex+base64``) or as the path of a file holding one.

    Raises:
        UsageError: It is neither.
    """
    from custody.cli import load_verifier_key
    from custody.errors import VerificationError

    try:
        return load_verifier_key(value.strip())
    except (OSError, VerificationError) as exc:
        raise UsageError(f"the log key {value[:120]!r} is not a verifier key (name+hex+base64) "
                         f"or a file holding one: {exc}") from exc
