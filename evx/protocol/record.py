"""The download record's files, written by ``evx download`` beside the evidence and by the
service into a package's ZIP archive -- one definition, so ``evx verify`` reads both alike.

``.evx/PKG/`` holds:

* ``manifest.json`` -- every item received: name as stored (text form), local path where it
  was mapped, kind, size, SHA-256, link target; the manifest hash computed over them and the
  one recorded at seal;
* ``custody.json`` -- the package's custody pages as served (entries, inclusion proofs, signed
  checkpoint) and the log key they were verified against, at that moment;
* ``SHA256SUMS`` -- the files in ``sha256sum -c`` format, paths relative to the folder that
  holds ``.evx``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from evx.protocol.manifest import manifest_sha256
from evx.protocol.names import decode_text

RECORD_FORMAT = "evx-download-record/1"


def sha256sums_line(sha256: str, local: bytes) -> bytes:
    """One line of GNU ``sha256sum`` output for ``local`` (bytes, as on disk)."""
    if any(c in local for c in b"\\\n\r"):
        escaped = local.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + sha256.encode() + b"  " + escaped + b"\n"
    return sha256.encode() + b"  " + local + b"\n"


def record_files(package: dict[str, Any], origin: str, received: list[dict[str, Any]],
                 custody_pages: list[dict[str, Any]], log_key: str, *,
                 complete: bool) -> tuple[dict[str, bytes], str]:
    """The files of the download record and the manifest hash over ``received``.

    ``received`` holds, per item verified here: name, local (text form), kind, size, sha256,
    target.
    """
    items = sorted(received, key=lambda i: i["name"])
    computed = manifest_sha256(package["id"], items)
    manifest = {
        "format": RECORD_FORMAT,
        "package": package["id"],
        "server": origin,
        "case_reference": package.get("case_reference"),
        "owner_authority": package.get("owner_authority"),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": complete,
        "manifest_sha256": computed,
        "sealed_manifest_sha256": package.get("manifest_sha256"),
        "items": [{k: v for k, v in i.items() if v is not None and
                   not (k == "local" and v == i["name"])} for i in items],
    }
    sums = b"".join(sha256sums_line(i["sha256"], decode_text(i["local"]))
                    for i in sorted(items, key=lambda i: decode_text(i["local"]))
                    if i["kind"] == "file")
    custody = {"format": RECORD_FORMAT, "package": package["id"], "log_key": log_key,
               "pages": custody_pages}
    return {"manifest.json": _json(manifest), "custody.json": _json(custody),
            "SHA256SUMS": sums}, computed


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode()
