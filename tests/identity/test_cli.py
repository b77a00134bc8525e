"""tests for service/identity/cli.py: `evx authority ...` and `evx token` against real databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from evx.cli import commands
from service.db import make_engine
from service.identity.errors import InvalidToken
from service.identity.registry import TrustRegistry
from service.identity.tokens import Principal, verify_token
from tests.identity.support import AUDIENCE, ec_signer


@pytest.fixture
def evx(tmp_path: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[typer.Typer, dict[str, str], str]]:
    """The `evx` app, its environment (fresh data dir) and the database URL it will use."""
    app = typer.Typer()
    commands.register(app)
    monkeypatch.delenv("EVX_DATABASE_URL", raising=False)
    monkeypatch.delenv("EVX_AUDIENCE", raising=False)
    env = {"EVX_DATA_DIR": str(tmp_path / "data")}
    url = f"sqlite:///{(tmp_path / 'data' / 'evidence.db').resolve()}"
    if getattr(request, "param", "sqlite") == "postgres":
        url = str(request.getfixturevalue("pg_url"))
        env["EVX_DATABASE_URL"] = url
    initialised = CliRunner().invoke(app, ["init"], env=env)  # as an operator does first
    assert initialised.exit_code == 0, (initialised.output, initialised.exception)
    yield app, env, url


def run(evx: tuple[typer.Typer, dict[str, str], str], *args: str, code: int = 0) -> Result:
    app, env, _ = evx
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def verify(url: str, token: str) -> Principal:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return verify_token(token, lookup_key=TrustRegistry(conn).lookup_key,
                                audience=AUDIENCE, now=datetime.now(UTC),
                                leeway=timedelta(seconds=30))
    finally:
        engine.dispose()


@pytest.mark.parametrize("evx", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_generate_key_then_mint_a_token_that_verifies(evx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run(evx, "authority", "add", "DE-BKA", "--name", "Bundeskriminalamt", "--country", "DE",
        "--roles", "investigator,auditor", "--generate-key")
    shown = json.loads(run(evx, "authority", "show", "DE-BKA", "--json").stdout)
    assert (shown["id"], shown["country"], shown["roles"]) == (
        "DE-BKA", "DE", ["auditor", "investigator"])
    [key] = shown["keys"]
    assert (key["algorithm"], key["status"]) == ("ES256", "active")
    assert "d" not in key["jwk"]
    assert (tmp_path / "data" / "authorities" / "DE-BKA" / f"{key['kid']}.pem").is_file()

    token = run(evx, "token", "DE-BKA", "--sub", "officer-1", "--role", "auditor",
                "--ttl", "120").stdout.strip()
    principal = verify(evx[2], token)
    assert (principal.authority, principal.subject, principal.role) == (
        "DE-BKA", "officer-1", "auditor")
    assert timedelta(seconds=100) < principal.expires_at - datetime.now(UTC) <= timedelta(
        seconds=120)


@pytest.mark.parametrize("evx", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_rotation_from_the_command_line(evx) -> None:  # type: ignore[no-untyped-def]
    run(evx, "authority", "add", "FR-OCRTEH", "--name", "OCRTEH", "--country", "FR",
        "--generate-key")
    old_kid = json.loads(run(evx, "authority", "show", "FR-OCRTEH", "--json").stdout
                         )["keys"][0]["kid"]
    old_token = run(evx, "token", "FR-OCRTEH", "--sub", "a", "--role", "investigator").stdout
    run(evx, "authority", "key", "add", "FR-OCRTEH", "--generate-key")
    run(evx, "authority", "key", "retire", "FR-OCRTEH", old_kid)

    with pytest.raises(InvalidToken) as caught:
        verify(evx[2], old_token.strip())
    assert caught.value.reason == "unknown_key"
    new_token = run(evx, "token", "FR-OCRTEH", "--sub", "a", "--role", "investigator").stdout
    assert verify(evx[2], new_token.strip()).authority == "FR-OCRTEH"

    listed = json.loads(run(evx, "authority", "list", "--json").stdout)
    assert [sorted(k["status"] for k in a["keys"]) for a in listed] == [["active", "retired"]]
    assert "FR-OCRTEH" in run(evx, "authority", "list").stdout
    assert old_kid[:10] in run(evx, "authority", "show", "FR-OCRTEH").stdout

    # Every key the hub started or stopped trusting is on the record, with its thumbprint.
    keys = {k["kid"]: k for k in json.loads(run(
        evx, "authority", "show", "FR-OCRTEH", "--json").stdout)["keys"]}
    new_kid = next(k for k in keys if k != old_kid)
    entries = ledger_entries(evx)
    assert [(e["action"], e["details"].get("kid")) for e in entries] == [
        ("authority.added", None), ("authority.key_added", old_kid),
        ("authority.key_added", new_kid), ("authority.key_retired", old_kid)]
    assert entries[1]["details"]["thumbprint"] == keys[old_kid]["thumbprint"]
    assert entries[3]["details"]["thumbprint"] == keys[old_kid]["thumbprint"]
    assert {e["details"]["source"] for e in entries[1:]} == {"generated"}
    assert {(e["actor"]["authority"], e["actor"]["role"]) for e in entries} == {
        ("OPERATOR", "operator")}
    # Retiring again changes nothing and records nothing.
    run(evx, "authority", "key", "retire", "FR-OCRTEH", old_kid)
    assert len(ledger_entries(evx)) == 4


def ledger_entries(evx) -> list[dict]:  # type: ignore[no-untyped-def]
    from service.ledger.ledger import Ledger

    ledger = Ledger.open(evx[2], Path(evx[1]["EVX_DATA_DIR"]) / "keys" / "log-signing.key",
                         origin="test")
    try:
        size = ledger.tree_size()
        return [e.entry.to_dict() for e in ledger.entries(0, size)] if size else []
    finally:
        ledger.close()


def test_public_jwk_and_pem_registration(evx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    signer, second = ec_signer(), ec_signer()
    jwk_file, pem_file = tmp_path / "key.jwk", tmp_path / "key.pem"
    jwk_file.write_text(json.dumps({**signer.public.jwk, "kid": "bka-2030"}))
    pem_file.write_bytes(second.public_pem)
    run(evx, "authority", "add", "DE-BKA", "--name", "BKA", "--country", "de",
        "--jwk", str(jwk_file))
    run(evx, "authority", "key", "add", "DE-BKA", "--pem", str(pem_file), "--kid", "bka-2031")
    keys = json.loads(run(evx, "authority", "show", "DE-BKA", "--json").stdout)["keys"]
    assert sorted(k["kid"] for k in keys) == ["bka-2030", "bka-2031"]
    # Production registers public keys only: there is nothing to mint with.
    result = run(evx, "token", "DE-BKA", "--sub", "o", "--role", "investigator", code=2)
    assert "no private key" in result.stderr


def test_private_and_symmetric_keys_are_refused(evx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    signer = ec_signer()
    private_pem = tmp_path / "private.pem"
    private_pem.write_bytes(signer.private_pem)
    oct_jwk = tmp_path / "oct.jwk"
    oct_jwk.write_text(json.dumps({"kty": "oct", "k": "c2VjcmV0"}))
    run(evx, "authority", "add", "DE-BKA", "--name", "BKA", "--country", "DE")

    assert "private key" in run(evx, "authority", "key", "add", "DE-BKA", "--pem",
                                str(private_pem), code=2).stderr
    assert "symmetric" in run(evx, "authority", "key", "add", "DE-BKA", "--jwk",
                              str(oct_jwk), code=2).stderr
    result = run(evx, "authority", "add", "FR-X", "--name", "X", "--country", "FR",
                 "--pem", str(private_pem), code=2)
    assert "private key" in result.stderr
    shown = json.loads(run(evx, "authority", "show", "DE-BKA", "--json").stdout)
    assert shown["keys"] == []
    assert [a["id"] for a in json.loads(run(evx, "authority", "list", "--json").stdout)] == [
        "DE-BKA"]


def test_operator_errors_exit_by_the_table(evx) -> None:  # type: ignore[no-untyped-def]
    # refused input and conflicts are usage (2); unknown ids and refused roles are 4 -- never
    # 1, which means an integrity failure
    assert "must match" in run(evx, "authority", "add", "bka", "--name", "x", "--country", "DE",
                               code=2).stderr
    assert "unknown authority" in run(evx, "authority", "show", "DE-BKA", code=4).stderr
    run(evx, "authority", "add", "DE-BKA", "--name", "BKA", "--country", "DE", "--generate-key")
    assert "already exists" in run(evx, "authority", "add", "DE-BKA", "--name", "BKA",
                                   "--country", "DE", code=2).stderr
    assert "may not assert role" in run(evx, "token", "DE-BKA", "--sub", "o", "--role",
                                        "auditor", code=4).stderr
    assert "no such key" in run(evx, "authority", "key", "retire", "DE-BKA", "nope",
                                code=4).stderr
