"""Bounded before trusted (review H3, L8): no body is read before the caller is authenticated,
JSON bodies have a small maximum, validation errors do not amplify the request.

The app is driven as ASGI with a ``receive`` that counts what the service pulls, so "not read"
is observed, not assumed.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from tests.api.conftest import OWNER, World

MIB = 1024 * 1024


def _call(world: World, method: str, path: str, headers: dict[str, str],
          pieces: int, piece: bytes = b"A" * MIB) -> tuple[int, dict[str, Any], int]:
    """Send a body of ``pieces`` pieces; return (status, problem, pieces the app pulled)."""
    app = world.client.app
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= pieces:
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": piece, "more_body": pulled < pieces}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    anyio.run(app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body) if body else {}, pulled


def test_no_token_means_the_body_is_never_read(world: World) -> None:
    # H3: an 800 MiB body without a token was read whole before the 401.
    status, problem, pulled = _call(world, "POST", "/v1/packages",
                                    {"content-type": "application/json",
                                     "transfer-encoding": "chunked"}, pieces=800)
    assert status == 401
    assert problem["type"].endswith("/unauthenticated")
    assert pulled == 0


def test_refused_token_means_the_body_is_never_read(world: World) -> None:
    status, problem, pulled = _call(world, "POST", "/v1/packages",
                                    {"content-type": "application/json",
                                     "authorization": "Bearer e30.e30.x"}, pieces=50)
    assert (status, problem["reason"], pulled) == (401, "disallowed_algorithm", 0)


def test_declared_length_over_the_json_maximum_is_413_unread(world: World) -> None:
    headers = {**world.headers(OWNER), "content-type": "application/json",
               "content-length": str(800 * MIB)}
    status, problem, pulled = _call(world, "POST", "/v1/packages", headers, pieces=800)
    assert status == 413
    assert problem["type"].endswith("/body-too-large")
    assert pulled == 0


def test_chunked_body_is_cut_off_once_past_the_maximum(world: World) -> None:
    headers = {**world.headers(OWNER), "content-type": "application/json",
               "transfer-encoding": "chunked"}
    limit = world.settings.max_json_bytes
    status, problem, pulled = _call(world, "POST", "/v1/packages", headers, pieces=10_000,
                                    piece=b" " * 4096)
    assert status == 413
    assert problem["type"].endswith("/body-too-large")
    assert pulled == limit // 4096 + 1


def test_share_body_is_bounded_too(world: World) -> None:
    package_id = world.create_package()
    headers = {**world.headers(OWNER), "content-type": "application/json",
               "content-length": str(world.settings.max_json_bytes + 1)}
    status, _, pulled = _call(world, "POST", f"/v1/packages/{package_id}/shares", headers,
                              pieces=1)
    assert (status, pulled) == (413, 0)


def test_a_json_body_under_the_maximum_still_works(world: World) -> None:
    r = world.client.post("/v1/packages", headers=world.headers(OWNER),
                          json={"case_reference": "C-1", "title": "t", "description": "d" * 9_000})
    assert r.status_code == 201, r.text


def test_validation_errors_are_bounded(world: World) -> None:
    # L8: 200,000 unknown keys gave a 13 MB 422. Now the body is capped and so is the answer.
    extra = {f"k{i}": 0 for i in range(5000)}
    body = json.dumps({"case_reference": "C-1", "title": "t", **extra}).encode()
    assert len(body) <= world.settings.max_json_bytes
    r = world.client.post("/v1/packages", headers={**world.headers(OWNER),
                                                   "content-type": "application/json"},
                          content=body)
    assert r.status_code == 422
    problem = r.json()
    assert len(problem["errors"]) == 20
    assert problem["errors_total"] == 5000
    assert len(r.content) < 8192
