"""The partner directory (`GET /v1/authorities`): who a package can be shared with."""

from __future__ import annotations

import difflib
from typing import Any

from evx.client.errors import UsageError
from evx.client.http import Api


def list_authorities(api: Api) -> list[dict[str, Any]]:
    """Every partner authority the server knows: ``id``, ``name``, ``country``, ``roles``."""
    return list(api.json("GET", "/v1/authorities")["authorities"])


def suggestions(unknown: str, known: list[str]) -> list[str]:
    """Ids close to ``unknown`` (ignoring case), best first: the "did you mean"."""
    folded = {k.upper(): k for k in known}
    return [folded[m] for m in difflib.get_close_matches(unknown.upper(), list(folded), n=3,
                                                         cutoff=0.5)]


def check_partner(api: Api, authority: str) -> dict[str, Any]:
    """The directory entry of ``authority``. Raises UsageError naming the closest ids."""
    known = list_authorities(api)
    for entry in known:
        if entry["id"] == authority:
            return entry
    close = suggestions(authority, [a["id"] for a in known])
    hint = (f"Did you mean {' or '.join(close)}?" if close else
            "See the partner authorities with: evx authorities")
    raise UsageError(f"no partner authority {authority!r} on this server", hint=hint,
                     slug="unknown-authority", details={"suggestions": close})
