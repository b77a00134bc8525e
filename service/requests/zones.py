"""The time zone deadlines are counted in: the executing authority's, from its country.

A deployment overrides it per authority (``EVX_AUTHORITY_TIMEZONES``); unknown countries count
in UTC. Countries with several zones get their capital's.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

COUNTRY_ZONES = {
    "AT": "Europe/Vienna", "BE": "Europe/Brussels", "BG": "Europe/Sofia", "HR": "Europe/Zagreb",
    "CY": "Asia/Nicosia", "CZ": "Europe/Prague", "DK": "Europe/Copenhagen",
    "EE": "Europe/Tallinn", "FI": "Europe/Helsinki", "FR": "Europe/Paris", "DE": "Europe/Berlin",
    "GR": "Europe/Athens", "HU": "Europe/Budapest", "IE": "Europe/Dublin", "IT": "Europe/Rome",
    "LV": "Europe/Riga", "LT": "Europe/Vilnius", "LU": "Europe/Luxembourg", "MT": "Europe/Malta",
    "NL": "Europe/Amsterdam", "PL": "Europe/Warsaw", "PT": "Europe/Lisbon",
    "RO": "Europe/Bucharest", "SK": "Europe/Bratislava", "SI": "Europe/Ljubljana",
    "ES": "Europe/Madrid", "SE": "Europe/Stockholm", "NO": "Europe/Oslo",
    "IS": "Atlantic/Reykjavik",
    "CH": "Europe/Zurich", "GB": "Europe/London", "UA": "Europe/Kyiv", "US": "America/New_York",
    "CA": "America/Toronto", "JP": "Asia/Tokyo", "AU": "Australia/Sydney",
}


def parse_overrides(text: str | None) -> dict[str, str]:
    """``"DE-BKA=Europe/Berlin,FR-OCRTEH=Europe/Paris"`` as a dict, every zone checked.

    Raises:
        ValueError: a malformed pair or an unknown zone.
    """
    result: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in (text or "").split(","))):
        authority, sep, zone = pair.partition("=")
        if not sep or not authority.strip():
            raise ValueError(f"EVX_AUTHORITY_TIMEZONES: {pair!r} is not AUTHORITY=Zone/Name")
        result[authority.strip()] = str(zone_named(zone.strip()))
    return result


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def authority_zone(authority: str, country: str, overrides: dict[str, str]) -> ZoneInfo:
    return zone_named(overrides.get(authority) or COUNTRY_ZONES.get(country.upper(), "UTC"))
