"""The options client commands share, and the trust state they use."""

from __future__ import annotations

import typer

from evx.client.http import DEFAULT_URL, Api
from evx.client.state import TrustState, default_state_dir

URL = typer.Option(DEFAULT_URL, "--url", envvar="EVX_URL", show_envvar=True,
                   help="The evidence-exchange server.")
TOKEN = typer.Option(None, "--token", envvar="EVX_TOKEN", show_envvar=True,
                     show_default=False,
                     help="Your bearer token (prefer the environment variable: command lines "
                          "are visible to other users).")
JSON = typer.Option(False, "--json", help="One JSON document on stdout, for scripts.")


def trust_state(api: Api) -> TrustState:
    return TrustState(default_state_dir(), api.origin)
