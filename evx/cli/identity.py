"""`evx authority ...` (trust registry) and `evx token` (dev/test issuing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from evx.cli.app import PANEL_SERVER, command, group
from evx.cli.options import JSON, OUTPUT, WIDE
from evx.cli.render import Column, Output, when
from evx.client.errors import DeniedError, UsageError

if TYPE_CHECKING:  # the service is imported when a command runs (it needs the server extra)
    from service.identity.authorities import Authority
    from service.identity.keys import PublicKey

group("authority", "Trust registry: partner authorities and their public keys.",
      panel=PANEL_SERVER)
group("authority key", "Add and retire an authority's token-signing keys (rotation).")


@contextmanager
def _registry_session() -> Iterator[tuple[Any, Path]]:
    """One transaction on the configured database (migrated first), and the data directory."""
    from service.db import SQLITE_BEGIN, make_engine, upgrade
    from service.settings import load_settings

    settings = load_settings()
    if settings.auto_migrate:
        upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        # SQLite: take the write lock up front so concurrent commands wait their turn (a
        # deferred transaction that reads first cannot wait for it and fails at once).
        with engine.connect() as conn, \
                conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin():
            yield conn, settings.data_dir
    finally:
        engine.dispose()


@contextmanager
def _registrar() -> Iterator[tuple[Any, Any, Path]]:
    """The registrar (every change on the record) and the operator actor of this command."""
    import getpass
    import socket

    from service.db import make_engine, upgrade
    from service.identity.registrar import TrustRegistrar
    from service.runtime import build_ledger
    from service.settings import load_settings

    settings = load_settings()
    if settings.auto_migrate:
        upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    ledger = build_ledger(settings, engine)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    registrar = TrustRegistrar(engine, ledger, operator_authority=settings.operator_authority)
    try:
        yield registrar, registrar.operator(f"{user}@{socket.gethostname()}"), settings.data_dir
    finally:
        ledger.close()
        engine.dispose()


def _sync_provider(registrar: Any, authority: Authority) -> None:
    """Fetch the provider's keys now, so the operator sees them (or why not) at once."""
    from service.identity.providers import ProviderUnavailable, discover_keys, provider_http_client

    assert authority.issuer is not None
    try:
        with provider_http_client() as client:
            published = discover_keys(authority.issuer, client)
    except ProviderUnavailable as exc:
        typer.echo(f"warning: keys of {authority.issuer} not fetched: {exc}\n"
                   "  The service fetches them when the first token arrives; or run "
                   f"`evx authority sync {authority.id}`.", err=True)
        return
    changes = registrar.sync_provider_keys(authority.id, authority.issuer, published.keys,
                                           jwks_uri=published.jwks_uri)
    for key in changes.added:
        typer.echo(f"trusting key {key.kid} ({key.algorithm}) of {authority.id} from "
                   f"{published.jwks_uri}")
    for key in changes.retired:
        typer.echo(f"no longer trusting key {key.kid} of {authority.id}")
    for why in (*published.ignored, *changes.skipped):
        typer.echo(f"ignored: {why}", err=True)
    if not changes.added and not changes.retired:
        typer.echo(f"keys of {authority.id} unchanged")


def _public_key(jwk: Path | None, pem: Path | None, kid: str | None,
                alg: str | None) -> PublicKey | None:
    from service.identity.keys import public_key_from_jwk, public_key_from_pem

    if jwk is not None and pem is not None:
        raise typer.BadParameter("give --jwk or --pem, not both")
    if jwk is not None:
        key = public_key_from_jwk(jwk.read_bytes(), algorithm=alg)
        if kid is not None and kid != key.kid:
            raise typer.BadParameter("--kid conflicts with the JWK's kid")
        return key
    if pem is not None:
        return public_key_from_pem(pem.read_bytes(), kid=kid, algorithm=alg)
    return None


_JWK = typer.Option(None, "--jwk", exists=True, dir_okay=False, help="Public JWK (JSON) file.")
_PEM = typer.Option(None, "--pem", exists=True, dir_okay=False, help="PEM public key file.")
_GENERATE = typer.Option(False, "--generate-key",
                         help="Dev/test: generate an EC P-256 key pair; the private key stays "
                              "in the data directory.")
_KID = typer.Option(None, "--kid", help="Key id (default: the JWK's kid or its RFC 7638 "
                                        "thumbprint).")
_ISSUER = typer.Option(None, "--issuer", help="OpenID Connect issuer URL of the authority's "
                                               "identity provider (https).")
_CLIENT_ID = typer.Option(None, "--client-id", help="Public client id `evx login` uses at the "
                                                     "issuer.")
_ALG = typer.Option(None, "--alg", help="Algorithm to bind the key to (default RS256 for RSA, "
                                        "ES256/ES384 by curve).")


@command("add", group="authority", server=True)
def authority_add(
    authority_id: str = typer.Argument(..., metavar="ID", help="Issuer id, e.g. DE-BKA."),
    name: str = typer.Option(..., help="Human name of the authority."),
    country: str = typer.Option(..., help="ISO 3166-1 alpha-2 country code."),
    roles: str = typer.Option("investigator", help="Comma-separated: investigator,auditor."),
    generate_key: bool = _GENERATE, jwk: Path | None = _JWK, pem: Path | None = _PEM,
    kid: str | None = _KID, alg: str | None = _ALG,
    issuer: str | None = _ISSUER, client_id: str | None = _CLIENT_ID,
) -> None:
    """Register a partner authority: with its identity provider (--issuer, --client-id; its
    keys are fetched from the provider's JWKS), and/or a public key added by hand.
    Every key the hub starts trusting is a ledger entry."""
    if generate_key and (jwk or pem):
        raise typer.BadParameter("--generate-key and --jwk/--pem are exclusive")
    if client_id is not None and issuer is None:
        raise typer.BadParameter("--client-id needs --issuer")
    key = _public_key(jwk, pem, kid, alg)
    with _registrar() as (registrar, actor, data_dir):
        keys: list[tuple[PublicKey, Any]] = [(key, "manual")] if key is not None else []
        generated = None
        if generate_key:
            from service.identity.authorities import check_authority_id
            from service.identity.issuer import generate_key_pair

            public, generated = generate_key_pair(data_dir, check_authority_id(authority_id))
            keys.append((public, "generated"))
        try:
            authority = registrar.add_authority(
                actor, authority_id, name=name, country=country.upper(),
                roles=[r.strip() for r in roles.split(",") if r.strip()], issuer=issuer,
                client_id=client_id, keys=keys)
        except BaseException:
            if generated is not None:
                generated.unlink(missing_ok=True)
            raise
        typer.echo(f"added {authority.id}" + "".join(f" key {k.kid}" for k in authority.keys)
                   + (f" issuer {authority.issuer}" if authority.issuer else ""))
        if authority.issuer is not None:
            _sync_provider(registrar, authority)


@command("provider", group="authority", server=True)
def authority_provider(
    authority_id: str = typer.Argument(..., metavar="ID"),
    issuer: str | None = _ISSUER, client_id: str | None = _CLIENT_ID,
    none: bool = typer.Option(False, "--none", help="The authority has no identity provider "
                                                     "(its provider keys stop being trusted)."),
) -> None:
    """Set or change an authority's identity provider; its keys are fetched at once."""
    if none == (issuer is not None):
        raise typer.BadParameter("give --issuer (and --client-id) or --none")
    if client_id is not None and issuer is None:
        raise typer.BadParameter("--client-id needs --issuer")
    with _registrar() as (registrar, actor, _):
        authority = registrar.set_identity_provider(actor, authority_id, issuer=issuer,
                                                    client_id=client_id)
        typer.echo(f"{authority.id}: issuer {authority.issuer or '(none)'}, client id "
                   f"{authority.client_id or '(none)'}")
        if authority.issuer is not None:
            _sync_provider(registrar, authority)


@command("sync", group="authority", server=True)
def authority_sync(authority_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Fetch the authority's provider keys now (the service also does so by itself)."""
    from service.identity.registry import TrustRegistry

    with _registrar() as (registrar, _, _data):
        with registrar.engine.connect() as conn:
            authority = TrustRegistry(conn).get_authority(authority_id)
        if authority.issuer is None:
            raise UsageError(f"{authority_id} has no identity provider",
                             hint=f"evx authority provider {authority_id} --issuer URL",
                             slug="no-identity-provider")
        _sync_provider(registrar, authority)


#: ``evx authority list`` (rows: the --json objects).
AUTHORITY_COLUMNS = (
    Column("id", lambda a: a["id"], id=True),
    Column("name", lambda a: a["name"]),
    Column("country", lambda a: a["country"]),
    Column("roles", lambda a: ",".join(a["roles"])),
    Column("active keys", lambda a: str(sum(k["status"] == "active" for k in a["keys"]))),
    Column("retired keys", lambda a: str(sum(k["status"] != "active" for k in a["keys"]))),
    Column("identity provider", lambda a: a["issuer"] or "", wide=True),
    Column("client id", lambda a: a["client_id"] or "", wide=True),
    Column("created (UTC)", lambda a: when(a["created_at"]), wide=True),
)

#: ``evx authority show``'s keys (also its ``-o tsv``).
KEY_COLUMNS = (
    Column("kid", lambda k: k["kid"], id=True),
    Column("alg", lambda k: k["algorithm"]),
    Column("status", lambda k: k["status"]),
    Column("source", lambda k: k["source"]),
    Column("added (UTC)", lambda k: when(k["added_at"])),
    Column("retired (UTC)", lambda k: when(k["retired_at"])),
    Column("thumbprint (RFC 7638)", lambda k: k["thumbprint"], id=True, wide=True),
)


@command("list", group="authority", server=True)
def authority_list(as_json: bool = JSON, output_format: str = OUTPUT,
                   wide: bool = WIDE) -> None:
    """List registered authorities."""
    from service.identity.registry import TrustRegistry

    output = Output(as_json=as_json, fmt=output_format, wide=wide)
    with _registry_session() as (db, _):
        found = [_authority_json(a) for a in TrustRegistry(db).list_authorities()]
    output.rows(found, found, AUTHORITY_COLUMNS, empty="no authorities")


@command("show", group="authority", server=True)
def authority_show(
    authority_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = JSON, output_format: str = OUTPUT, wide: bool = WIDE,
) -> None:
    """Show an authority and all its keys (-o tsv: the keys)."""
    from service.identity.registry import TrustRegistry

    output = Output(as_json=as_json, fmt=output_format, wide=wide)
    with _registry_session() as (db, _):
        authority = _authority_json(TrustRegistry(db).get_authority(authority_id))
    if not (output.as_json or output.tsv):
        output.result(None, escape(
            f"{authority['id']}  {authority['name']} ({authority['country']})  roles: "
            f"{', '.join(authority['roles'])}  created {when(authority['created_at'])}"))
        if authority["issuer"]:
            output.result(None, escape(f"identity provider: {authority['issuer']}  client id: "
                                       f"{authority['client_id'] or '(none)'}"))
    output.rows(authority, authority["keys"], KEY_COLUMNS, empty="no keys")


@command("add", group="authority key", server=True)
def key_add(
    authority_id: str = typer.Argument(..., metavar="ID"),
    generate_key: bool = _GENERATE, jwk: Path | None = _JWK, pem: Path | None = _PEM,
    kid: str | None = _KID, alg: str | None = _ALG,
) -> None:
    """Add an active public key (rotation: add the new key, then retire the old one)."""
    from service.identity.authorities import check_authority_id
    from service.identity.issuer import generate_key_pair

    if generate_key == bool(jwk or pem):
        raise typer.BadParameter("give exactly one of --jwk, --pem or --generate-key")
    key = _public_key(jwk, pem, kid, alg)
    with _registrar() as (registrar, actor, data_dir):
        if key is not None:
            added = registrar.add_key(actor, authority_id, key, source="manual")
        else:
            public, path = generate_key_pair(data_dir, check_authority_id(authority_id))
            try:
                added = registrar.add_key(actor, authority_id, public, source="generated")
            except BaseException:
                path.unlink(missing_ok=True)
                raise
    typer.echo(f"added key {added.kid} ({added.algorithm}) to {authority_id}")


@command("retire", group="authority key", server=True)
def key_retire(
    authority_id: str = typer.Argument(..., metavar="ID"),
    kid: str = typer.Argument(..., metavar="KID"),
) -> None:
    """Retire a key: tokens signed with it are refused from now on."""
    with _registrar() as (registrar, actor, _):
        retired = registrar.retire_key(actor, authority_id, kid, why="retired by the operator")
    typer.echo(f"retired key {retired.kid} of {authority_id}")


@command("token", server=True, panel=PANEL_SERVER)
def token(
    authority_id: str = typer.Argument(..., metavar="ID", help="Issuing authority."),
    sub: str = typer.Option(..., "--sub", help="Officer identifier."),
    role: str = typer.Option(..., "--role", help="investigator or auditor."),
    ttl: int = typer.Option(int(timedelta(minutes=15).total_seconds()), "--ttl", min=1,
                            help="Lifetime in seconds."),
    aud: str | None = typer.Option(None, "--aud", help="Audience (default EVX_AUDIENCE)."),
    kid: str | None = typer.Option(None, "--kid", help="Signing key (default newest active)."),
) -> None:
    """Development only: mint a token with a key kept in the server's data directory.

    Officers sign in with `evx login` (their authority's identity provider); scripts use
    EVX_TOKEN with a token their authority issued."""
    from service.identity.issuer import mint_token
    from service.identity.registry import TrustRegistry
    from service.settings import Settings

    audience = aud or Settings().audience
    with _registry_session() as (db, data_dir):
        authority = TrustRegistry(db).get_authority(authority_id)
        if role not in authority.roles:
            raise DeniedError(f"{authority_id} may not assert role {role!r} "
                              f"(allowed: {', '.join(sorted(authority.roles))})",
                              slug="role-not-allowed")
        try:
            minted = mint_token(db, data_dir, authority_id, subject=sub, role=role,
                                audience=audience, ttl=timedelta(seconds=ttl), kid=kid)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo("note: `evx token` is for development; officers sign in with `evx login`",
               err=True)
    typer.echo(minted)


def _authority_json(authority: Authority) -> dict[str, Any]:
    return {
        "id": authority.id, "name": authority.name, "country": authority.country,
        "roles": sorted(authority.roles), "created_at": authority.created_at.isoformat(),
        "issuer": authority.issuer, "client_id": authority.client_id,
        "keys": [{
            "kid": k.kid, "algorithm": k.algorithm, "status": k.status,
            "thumbprint": k.thumbprint, "source": k.source, "added_at": k.added_at.isoformat(),
            "retired_at": k.retired_at.isoformat() if k.retired_at else None,
            "jwk": json.loads(k.public_jwk),
        } for k in authority.keys],
    }
