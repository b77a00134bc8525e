"""Partner authorities: what a trust-registry entry is, and what makes one acceptable."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from service.identity.errors import AuthorityRejected

INVESTIGATOR = "investigator"
AUDITOR = "auditor"
ROLES = frozenset({INVESTIGATOR, AUDITOR})

#: ``DE-BKA``, ``FR-OCRTEH`` (country prefix + agency), or a bare id such as the operator's
#: ``OPERATOR``. Authority ids are JWT issuers, ledger actors and directory names: no lower case,
#: no punctuation beyond one hyphen, bounded length.
AUTHORITY_ID_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{1,31}(?:-[A-Z0-9]{2,32})?$")
MAX_NAME_CHARS = 200

#: ISO 3166-1 alpha-2, officially assigned codes (from the iso-codes database).
ISO_3166_ALPHA2 = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())  # noqa: SIM905 - the code table laid out as ISO 3166 prints it
#: "EU" is exceptionally reserved in ISO 3166-1 for the European Union: Europol and Eurojust
#: are partners without a member-state country.
COUNTRY_CODES = ISO_3166_ALPHA2 | {"EU"}

KeyStatus = Literal["active", "retired"]
#: Where a trusted key came from: registered by hand, generated for development, or fetched from
#: the authority's identity provider (its JWKS).
KeySource = Literal["manual", "generated", "jwks"]

MAX_ISSUER_CHARS = 512
#: A public OAuth client id (RFC 6749 section 2.2): printable ASCII, bounded.
CLIENT_ID_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")


@dataclass(frozen=True)
class AuthorityKey:
    """A registered public key of an authority. Retired keys stay listed; they verify nothing."""

    authority_id: str
    kid: str
    algorithm: str
    public_jwk: str
    thumbprint: str
    status: KeyStatus
    added_at: datetime
    retired_at: datetime | None
    source: KeySource = "manual"


@dataclass(frozen=True)
class Authority:
    """A partner authority whose officers' tokens this service trusts."""

    id: str
    name: str
    country: str
    roles: frozenset[str]
    created_at: datetime
    keys: tuple[AuthorityKey, ...] = ()
    issuer: str | None = None
    client_id: str | None = None

    @property
    def active_keys(self) -> tuple[AuthorityKey, ...]:
        return tuple(k for k in self.keys if k.status == "active")


def check_authority_id(authority_id: str) -> str:
    """Return ``authority_id`` if it is well-formed, else raise :class:`AuthorityRejected`."""
    if not isinstance(authority_id, str) or not AUTHORITY_ID_PATTERN.fullmatch(authority_id):
        raise AuthorityRejected(
            f"authority id {authority_id!r} must match {AUTHORITY_ID_PATTERN.pattern} "
            "(e.g. DE-BKA)"
        )
    return authority_id


def check_authority(
    authority_id: str, *, name: str, country: str, roles: Iterable[str]
) -> tuple[str, str, str, frozenset[str]]:
    """Validate a new authority's fields; return them normalized (id, name, country, roles)."""
    check_authority_id(authority_id)
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > MAX_NAME_CHARS:
        raise AuthorityRejected(f"name must be 1 to {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise AuthorityRejected("name must not contain control or format characters")
    if country not in COUNTRY_CODES:
        raise AuthorityRejected(f"country {country!r} is not an ISO 3166-1 alpha-2 code")
    prefix, _, rest = authority_id.partition("-")
    if rest and len(prefix) == 2 and prefix != country:
        raise AuthorityRejected(f"authority id {authority_id!r} names country {prefix} "
                                f"but country is {country}")
    role_set = frozenset(roles)
    if not role_set:
        raise AuthorityRejected("an authority needs at least one allowed role")
    unknown = role_set - ROLES
    if unknown:
        raise AuthorityRejected(f"unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")
    return authority_id, name, country, role_set


def check_issuer(issuer: str) -> str:
    """Return an OpenID Connect issuer URL if acceptable, else raise :class:`AuthorityRejected`.

    OpenID Connect Discovery 1.0 section 2: ``https``, no query, no fragment. ``http`` only on a
    loopback address (a provider started on the same machine, for development and tests): a
    JWKS fetched over plain HTTP from the network could be swapped by anyone on the path.
    """
    if not isinstance(issuer, str) or not issuer or len(issuer) > MAX_ISSUER_CHARS:
        raise AuthorityRejected(f"issuer must be a URL of at most {MAX_ISSUER_CHARS} characters")
    if not issuer.isascii() or any(ch.isspace() or not ch.isprintable() for ch in issuer):
        raise AuthorityRejected("issuer must be an ASCII URL without spaces")
    parts = urlsplit(issuer)
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        raise AuthorityRejected("issuer must have no query and no fragment")
    if not parts.hostname or parts.username or parts.password:
        raise AuthorityRejected("issuer must be an absolute URL with a host and no user info")
    if parts.scheme == "http":
        if not _loopback(parts.hostname):
            raise AuthorityRejected("issuer must use https (http only on a loopback address)")
    elif parts.scheme != "https":
        raise AuthorityRejected("issuer must be an https URL")
    return issuer


def check_client_id(client_id: str) -> str:
    """Return a public client id if acceptable, else raise :class:`AuthorityRejected`."""
    if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
        raise AuthorityRejected("client id must be 1 to 200 printable ASCII characters")
    return client_id


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
