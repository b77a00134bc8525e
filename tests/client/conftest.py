"""Real `evx serve` processes for the client tests: embedded defaults (SQLite + folder) and
PostgreSQL + SeaweedFS. One server per backend for the session: registering authorities and minting
tokens through the CLI costs a second per call."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.flaky import FlakyProxy
from tests.client.harness import OPERATOR, OWNER, RECIPIENT, EvxServer, User
from tests.support.postgres import Templates


@dataclass
class World:
    """A running server and the people of the issue, each with their own client state."""

    server: EvxServer
    investigator: User  # DE-BKA, owns the evidence
    recipient: User  # FR-OCRTEH investigator
    owner_auditor: User
    recipient_auditor: User
    operator_auditor: User


def build_world(server: EvxServer) -> World:
    # One at a time: `evx authority add` writes the registry (SQLite allows one writer).
    server.add_authority(OWNER, "DE", "investigator,auditor")
    server.add_authority(RECIPIENT, "FR", "investigator,auditor")
    server.add_authority(OPERATOR, "EU", "auditor")
    users = server.users([(OWNER, "investigator", "anna.schmidt"),
                          (RECIPIENT, "investigator", "luc.martin"),
                          (OWNER, "auditor", "dieter.audit"),
                          (RECIPIENT, "auditor", "claire.audit"),
                          (OPERATOR, "auditor", "olga.operator")])
    server.start()
    return World(server, *users)


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # No clock leeway, so a token can be shown to expire within a test.
    server = EvxServer(tmp_path_factory.mktemp("evx-embedded"),
                       extra_env={"EVX_TOKEN_LEEWAY_SECONDS": "0"})
    try:
        yield build_world(server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_s3(tmp_path_factory: pytest.TempPathFactory, pg_templates: Templates,
          seaweed: object) -> Iterator[World]:
    with pg_templates.clone(prefix="evx_client") as url:
        yield from _pg_s3_world(tmp_path_factory, url, seaweed)


def _pg_s3_world(tmp_path_factory: pytest.TempPathFactory, url: str,
                 seaweed: object) -> Iterator[World]:
    server = EvxServer(tmp_path_factory.mktemp("evx-pg-s3"), extra_env={
        "EVX_DATABASE_URL": url, "EVX_OBJECT_STORE": "s3",
        "EVX_S3_ENDPOINT": seaweed.endpoint,  # type: ignore[attr-defined]
        "EVX_S3_ACCESS_KEY": seaweed.access_key,  # type: ignore[attr-defined]
        "EVX_S3_SECRET_KEY": seaweed.secret_key,  # type: ignore[attr-defined]
        "EVX_S3_BUCKET": f"evx-client-{uuid.uuid4().hex[:12]}",
    })
    try:
        yield build_world(server)
    finally:
        server.stop()


@pytest.fixture(params=["embedded", pytest.param("pg_s3", marks=[pytest.mark.postgres,
                                                                  pytest.mark.s3])])
def world(request: pytest.FixtureRequest) -> World:
    """Each test using it runs on the embedded defaults and on PostgreSQL + SeaweedFS."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.fixture
def proxy(embedded: World) -> Iterator[FlakyProxy]:
    """A flaky proxy (tests/client/flaky.py) in front of the embedded server."""
    flaky = FlakyProxy(embedded.server.url).start()
    try:
        yield flaky
    finally:
        flaky.stop()


def write_random(path: Path, size: int, block: int = 1024 * 1024) -> Path:
    """A file of ``size`` random bytes, written in blocks."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        left = size
        while left:
            n = min(block, left)
            handle.write(os.urandom(n))
            left -= n
    return path
