"""`evx authority ...` (trust registry) and `evx token` (dev/test issuing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from service.identity.authorities import Authority
from service.identity.errors import IdentityError
from service.identity.keys import PublicKey, public_key_from_jwk, public_key_from_pem

authority_app = typer.Typer(help="Trust registry: partner authorities and their public keys.",
                            no_args_is_help=True)
key_app = typer.Typer(help="Add and retire an authority's token-signing keys (rotation).",
                      no_args_is_help=True)
authority_app.add_typer(key_app, name="key")


def register(app: typer.Typer) -> None:
    app.add_typer(authority_app, name="authority")
    app.command("token")(token)


@contextmanager
def _registry_session() -> Iterator[tuple[Any, Path]]:
    """One transaction on the configured database (migrated first), and the data directory."""
    from service.db import SQLITE_BEGIN, make_engine, upgrade
    from service.settings import load_settings

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.auto_migrate:
        upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        # SQLite: take the write lock up front so concurrent commands wait their turn (a
        # deferred transaction that reads first cannot wait for it and fails at once).
        with engine.connect() as conn, \
                conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin():
            yield conn, settings.data_dir
    except IdentityError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()


def _public_key(jwk: Path | None, pem: Path | None, kid: str | None,
                alg: str | None) -> PublicKey | None:
    if jwk is not None and pem is not None:
        raise typer.BadParameter("give --jwk or --pem, not both")
    try:
        if jwk is not None:
            key = public_key_from_jwk(jwk.read_bytes(), algorithm=alg)
            if kid is not None and kid != key.kid:
                raise typer.BadParameter("--kid conflicts with the JWK's kid")
            return key
        if pem is not None:
            return public_key_from_pem(pem.read_bytes(), kid=kid, algorithm=alg)
    except IdentityError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    return None


_JWK = typer.Option(None, "--jwk", exists=True, dir_okay=False, help="Public JWK (JSON) file.")
_PEM = typer.Option(None, "--pem", exists=True, dir_okay=False, help="PEM public key file.")
_GENERATE = typer.Option(False, "--generate-key",
                         help="Dev/test: generate an EC P-256 key pair; the private key stays "
                              "in the data directory.")
_KID = typer.Option(None, "--kid", help="Key id (default: the JWK's kid or its RFC 7638 "
                                        "thumbprint).")
_ALG = typer.Option(None, "--alg", help="Algorithm to bind the key to (default RS256 for RSA, "
                                        "ES256/ES384 by curve).")


@authority_app.command("add")
def authority_add(
    authority_id: str = typer.Argument(..., metavar="ID", help="Issuer id, e.g. DE-BKA."),
    name: str = typer.Option(..., help="Human name of the authority."),
    country: str = typer.Option(..., help="ISO 3166-1 alpha-2 country code."),
    roles: str = typer.Option("investigator", help="Comma-separated: investigator,auditor."),
    generate_key: bool = _GENERATE, jwk: Path | None = _JWK, pem: Path | None = _PEM,
    kid: str | None = _KID, alg: str | None = _ALG,
) -> None:
    """Register a partner authority, optionally with its first public key."""
    from service.identity.issuer import create_authority

    if generate_key and (jwk or pem):
        raise typer.BadParameter("--generate-key and --jwk/--pem are exclusive")
    key = _public_key(jwk, pem, kid, alg)
    with _registry_session() as (db, data_dir):
        authority = create_authority(
            db, authority_id, name=name, country=country.upper(),
            roles=[r.strip() for r in roles.split(",") if r.strip()], public_key=key,
            data_dir=data_dir if generate_key else None)
    typer.echo(f"added {authority.id}" + "".join(f" key {k.kid}" for k in authority.keys))


@authority_app.command("list")
def authority_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable.")) -> None:
    """List registered authorities."""
    from service.identity.registry import TrustRegistry

    with _registry_session() as (db, _):
        found = TrustRegistry(db).list_authorities()
    if as_json:
        typer.echo(json.dumps([_authority_json(a) for a in found], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "country", "roles", "active keys", "retired keys")
    for a in found:
        table.add_row(a.id, a.name, a.country, ",".join(sorted(a.roles)),
                      str(len(a.active_keys)), str(len(a.keys) - len(a.active_keys)))
    Console().print(table)


@authority_app.command("show")
def authority_show(
    authority_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable."),
) -> None:
    """Show an authority and all its keys."""
    from service.identity.registry import TrustRegistry

    with _registry_session() as (db, _):
        authority = TrustRegistry(db).get_authority(authority_id)
    if as_json:
        typer.echo(json.dumps(_authority_json(authority), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{authority.id}[/bold]  {authority.name} ({authority.country})  "
                  f"roles: {', '.join(sorted(authority.roles))}  "
                  f"created {authority.created_at.isoformat()}")
    table = Table("kid", "alg", "status", "added", "retired")
    for k in authority.keys:
        table.add_row(k.kid, k.algorithm, k.status, k.added_at.isoformat(),
                      k.retired_at.isoformat() if k.retired_at else "")
    console.print(table)


@key_app.command("add")
def key_add(
    authority_id: str = typer.Argument(..., metavar="ID"),
    generate_key: bool = _GENERATE, jwk: Path | None = _JWK, pem: Path | None = _PEM,
    kid: str | None = _KID, alg: str | None = _ALG,
) -> None:
    """Add an active public key (rotation: add the new key, then retire the old one)."""
    from service.identity.issuer import generate_key as generate
    from service.identity.registry import TrustRegistry

    if generate_key == bool(jwk or pem):
        raise typer.BadParameter("give exactly one of --jwk, --pem or --generate-key")
    key = _public_key(jwk, pem, kid, alg)
    with _registry_session() as (db, data_dir):
        if key is not None:
            added = TrustRegistry(db).add_key(authority_id, key)
        else:
            added = generate(db, data_dir, authority_id)
    typer.echo(f"added key {added.kid} ({added.algorithm}) to {authority_id}")


@key_app.command("retire")
def key_retire(
    authority_id: str = typer.Argument(..., metavar="ID"),
    kid: str = typer.Argument(..., metavar="KID"),
) -> None:
    """Retire a key: tokens signed with it are refused from now on."""
    from service.identity.registry import TrustRegistry

    with _registry_session() as (db, _):
        retired = TrustRegistry(db).retire_key(authority_id, kid)
    typer.echo(f"retired key {retired.kid} of {authority_id}")


def token(
    authority_id: str = typer.Argument(..., metavar="ID", help="Issuing authority."),
    sub: str = typer.Option(..., "--sub", help="Officer identifier."),
    role: str = typer.Option(..., "--role", help="investigator or auditor."),
    ttl: int = typer.Option(int(timedelta(minutes=15).total_seconds()), "--ttl", min=1,
                            help="Lifetime in seconds."),
    aud: str | None = typer.Option(None, "--aud", help="Audience (default EVX_AUDIENCE)."),
    kid: str | None = typer.Option(None, "--kid", help="Signing key (default newest active)."),
) -> None:
    """Dev/test: mint an officer token with a private key kept in the data directory."""
    from service.identity.issuer import mint_token
    from service.identity.registry import TrustRegistry
    from service.settings import Settings

    audience = aud or Settings().audience
    with _registry_session() as (db, data_dir):
        authority = TrustRegistry(db).get_authority(authority_id)
        if role not in authority.roles:
            typer.echo(f"error: {authority_id} may not assert role {role!r} "
                       f"(allowed: {', '.join(sorted(authority.roles))})", err=True)
            raise typer.Exit(1)
        try:
            minted = mint_token(db, data_dir, authority_id, subject=sub, role=role,
                                audience=audience, ttl=timedelta(seconds=ttl), kid=kid)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo(minted)


def _authority_json(authority: Authority) -> dict[str, Any]:
    return {
        "id": authority.id, "name": authority.name, "country": authority.country,
        "roles": sorted(authority.roles), "created_at": authority.created_at.isoformat(),
        "keys": [{
            "kid": k.kid, "algorithm": k.algorithm, "status": k.status,
            "thumbprint": k.thumbprint, "added_at": k.added_at.isoformat(),
            "retired_at": k.retired_at.isoformat() if k.retired_at else None,
            "jwk": json.loads(k.public_jwk),
        } for k in authority.keys],
    }
