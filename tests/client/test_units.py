"""The client's pure parts: item names from local files, RFC 9530 fields, problem mapping, and
the import boundary (the client never loads the service's or the store's internals)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from evx.cli.exits import (
    EXIT_AUTH,
    EXIT_DENIED,
    EXIT_INTEGRITY,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    exit_code_for,
)
from evx.client.errors import UsageError
from evx.client.http import error_from_response, server_origin
from evx.client.sources import collect_sources, open_source
from evx.client.transfer import parse_sha256_field, sha256_field

TYPE = "https://evidence-exchange.example/problems/"


def _problem(status: int, slug: str, **extra: object) -> httpx.Response:
    body = {"type": TYPE + slug, "title": "t", "status": status, "detail": "d", **extra}
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"content-type": "application/problem+json",
                                   "x-request-id": "abc"})


@pytest.mark.parametrize(("status", "slug", "code", "says"), [
    (401, "unauthenticated", EXIT_AUTH, "token"),
    (403, "share-expired", EXIT_DENIED, "share with your authority has expired"),
    (403, "share-revoked", EXIT_DENIED, "revoked"),
    (403, "forbidden", EXIT_DENIED, "may not"),
    (404, "not-found", EXIT_DENIED, "package id"),
    (409, "package-sealed", EXIT_USAGE, "new package"),
    (422, "digest-mismatch", EXIT_INTEGRITY, "Nothing was stored"),
    (500, "integrity-failure", EXIT_INTEGRITY, "damaged"),
    (503, "ledger-unavailable", EXIT_UNAVAILABLE, "ledger"),
])
def test_problem_types_become_distinct_errors(status: int, slug: str, code: int,
                                              says: str) -> None:
    error = error_from_response(_problem(status, slug))
    assert (exit_code_for(error), error.slug) == (code, slug)
    assert says in (error.hint or "")


def test_an_expired_token_says_so() -> None:
    error = error_from_response(_problem(401, "unauthenticated", reason="expired"))
    assert exit_code_for(error) == EXIT_AUTH and error.details["reason"] == "expired"
    assert error.message == "the token has expired" and "new one" in (error.hint or "")


def test_a_non_problem_error_falls_back_on_the_status() -> None:
    assert exit_code_for(error_from_response(httpx.Response(502, content=b"<html>"))) == \
        EXIT_UNAVAILABLE
    assert exit_code_for(error_from_response(httpx.Response(404))) == EXIT_DENIED


def test_digest_fields_round_trip() -> None:
    hex_digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert sha256_field(hex_digest) == "sha-256=:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=:"
    assert parse_sha256_field("sha-512=:AAAA:, " + sha256_field(hex_digest)) == hex_digest
    assert parse_sha256_field("sha-256=:AAAA:") is None  # not 32 bytes
    assert parse_sha256_field(None) is None


def test_server_origin_keys_the_trust_state() -> None:
    assert server_origin("https://evx.example/") == "https://evx.example:443"
    assert server_origin("http://127.0.0.1:8000/api") == "http://127.0.0.1:8000"
    with pytest.raises(UsageError):
        server_origin("ftp://x")


def test_directory_items_keep_exact_names_links_and_empty_dirs(tmp_path: Path) -> None:
    root = tmp_path / "case"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "x.bin").write_bytes(b"x")
    (root / "empty").mkdir()
    (root / os.fsdecode(b"bad\xffname:*.txt")).write_bytes(b"t")
    (tmp_path / "secret.txt").write_text("not evidence")
    os.symlink("a/b/x.bin", root / "inside-link")
    os.symlink(tmp_path / "secret.txt", root / "escape")
    os.symlink("/nonexistent", root / "dangling")
    found = {s.name: s for s in collect_sources([root])}
    assert sorted(found) == ["case/a/b/x.bin", "case/bad%FFname:*.txt", "case/dangling",
                             "case/empty", "case/escape", "case/inside-link"]
    assert (found["case/inside-link"].kind, found["case/inside-link"].target) == (
        "link", "a/b/x.bin")
    assert found["case/escape"].target == str(tmp_path / "secret.txt")
    assert found["case/empty"].kind == "directory"
    # --follow-links reads what a link to a file points to; a dangling one stays a link.
    followed = {s.name: s for s in collect_sources([root], follow_links=True)}
    assert followed["case/escape"].kind == "file"
    assert followed["case/dangling"].kind == "link"


def test_a_file_swapped_for_a_link_after_listing_is_refused(tmp_path: Path) -> None:
    """Review L5: a file replaced by a symbolic link between listing and upload is not read."""
    root = tmp_path / "case"
    root.mkdir()
    (root / "b.txt").write_text("listed")
    (tmp_path / "secret.txt").write_text("SECRET")
    (source,) = collect_sources([root])
    os.unlink(root / "b.txt")
    os.symlink(tmp_path / "secret.txt", root / "b.txt")
    with pytest.raises(UsageError, match="without following links"), open_source(source):
        pass
    os.unlink(root / "b.txt")
    (root / "b.txt").write_text("listed")  # same content, another file: refused too
    with pytest.raises(UsageError, match="not the file listed"), open_source(source):
        pass


def test_the_client_never_imports_server_or_store_internals() -> None:
    code = ("import sys, evx.cli.commands, evx.cli.main, evx.client.transfer, "
            "evx.client.trust\n"
            "evx.cli.main.build()\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('service', 'storage', 'fastapi', 'sqlalchemy', 'starlette', 'minio', 'alembic', "
            "'uvicorn', 'psycopg'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
