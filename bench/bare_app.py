"""The peer of the metadata-read benchmark: a bare FastAPI app returning the same document.

    EVX_BENCH_DOCUMENT=doc.json python -m uvicorn bench.bare_app:app --port 8001

No authentication, no database, no ledger: what a plain FastAPI endpoint costs on this machine,
served by the same uvicorn as `evx serve`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

app = FastAPI()
_DOCUMENT: dict[str, Any] = json.loads(Path(os.environ["EVX_BENCH_DOCUMENT"]).read_text())


@app.get("/v1/packages/{package_id}")
def get_package(package_id: str) -> dict[str, Any]:
    return _DOCUMENT
