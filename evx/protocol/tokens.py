"""Why the service refused a bearer token: the machine-readable ``reason`` of a 401 problem and
what the officer should do about it. The service sends the advice as the problem's ``detail``;
the client shows it and adds how to get a new token."""

from __future__ import annotations

from typing import Literal

#: Why a token was refused. Machine-readable, stable: partners' support desks match on these.
TokenRefusalReason = Literal[
    "oversized",
    "malformed",
    "disallowed_algorithm",
    "unknown_issuer",
    "unknown_key",
    "bad_signature",
    "missing_claim",
    "bad_audience",
    "expired",
    "not_yet_valid",
    "lifetime_too_long",
    "role_not_allowed",
]

REFUSAL_ADVICE: dict[str, str] = {
    "expired": "The token has expired. Ask your authority for a new one.",
    "not_yet_valid": "The token is not valid yet: check this machine's clock, or wait.",
    "bad_audience": "The token was issued for another service.",
    "unknown_issuer": "The token's issuer is not a registered partner authority here.",
    "unknown_key": "The token was signed with a key this service does not know (or retired).",
    "bad_signature": "The token's signature does not verify.",
    "disallowed_algorithm": "The token uses an algorithm this service does not accept.",
    "oversized": "The token is too large.",
    "role_not_allowed": "Your authority may not assert that role here.",
    "missing_claim": "The token lacks a required claim (iss, sub, aud, exp, nbf, iat, jti, "
                     "role).",
    "malformed": "The token is not a well-formed JWT.",
    "lifetime_too_long": "The token's lifetime exceeds what this service accepts (12 h).",
}
