"""The package manifest for the client: what a seal commits to, what a recipient verifies.

One definition with the service and the partners' rules checker: :func:`custody.rules.
manifest_sha256` (docs/api.md, "Transfers"); this takes items as the API lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from custody.rules import manifest_sha256 as _manifest_sha256


def manifest_sha256(package_id: str, items: Iterable[Mapping[str, Any]]) -> str:
    """Hex SHA-256 of the manifest of ``items`` (mappings with name, size, sha256 and, for
    links and directories, kind and target)."""
    return _manifest_sha256(package_id, (
        (str(i["name"]), int(i["size"]), str(i["sha256"]), str(i.get("kind") or "file"),
         i.get("target")) for i in items))
