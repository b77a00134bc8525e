"""The partner directory and sign-in discovery.

``GET /v1/authorities``: every partner authority (id, name, country, roles) for any signed-in
officer, so a share can be addressed without knowing ids by heart. ``GET
/v1/authorities/{id}/sign-in``: what ``evx login`` needs before it has a token -- the issuer the
trust registry records for the authority and the public client id to use there -- and nothing
else (no keys, no list of authorities).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from service.auth import Officer
from service.identity.authorities import AUTHORITY_ID_PATTERN, Authority
from service.identity.errors import UnknownAuthority
from service.identity.registry import TrustRegistry
from service.problems import AS_PROBLEM, NOT_FOUND, Problem
from service.wiring import EngineDep, SettingsDep

router = APIRouter(prefix="/v1/authorities", tags=["authorities"])



class AuthorityOut(BaseModel):
    id: str = Field(examples=["FR-OCRTEH"])
    name: str
    country: str = Field(description="ISO 3166-1 alpha-2 (EU for Union bodies).")
    roles: list[str] = Field(description="Roles its officers may act in.")


class AuthorityList(BaseModel):
    authorities: list[AuthorityOut]


class SignIn(BaseModel):
    authority: str
    issuer: str = Field(description="OpenID Connect issuer (discovery at "
                                    "{issuer}/.well-known/openid-configuration).")
    client_id: str = Field(description="Public client id (no secret) to sign in with.")
    audience: str = Field(description="The aud this service accepts; request tokens for it.")


def _directory(engine: Engine) -> list[Authority]:
    with engine.connect() as conn:
        return TrustRegistry(conn).list_authorities()


@router.get("", response_model=AuthorityList, responses={
    401: {"description": "Missing or refused token", **AS_PROBLEM}})
def list_authorities(engine: EngineDep, officer: Officer) -> AuthorityList:
    """The partner authorities packages can be shared with (and this service's operator)."""
    del officer  # any authenticated officer may read the directory
    return AuthorityList(authorities=[
        AuthorityOut(id=a.id, name=a.name, country=a.country, roles=sorted(a.roles))
        for a in _directory(engine)])


@router.get("/{authority_id}/sign-in", response_model=SignIn, responses={
    404: {"description": "No such authority, or it has no identity provider", **AS_PROBLEM}})
def sign_in(
    engine: EngineDep, settings: SettingsDep,
    authority_id: Annotated[str, Path(max_length=64, pattern=AUTHORITY_ID_PATTERN.pattern)],
) -> SignIn:
    """Where officers of ``authority_id`` sign in. Public: needed before there is a token."""
    with engine.connect() as conn:
        try:
            authority = TrustRegistry(conn).get_authority(authority_id)
        except UnknownAuthority:
            raise Problem(NOT_FOUND, f"No authority {authority_id} is registered here. Check "
                                     "the id with your hub's operator.") from None
    if authority.issuer is None or authority.client_id is None:
        raise Problem(NOT_FOUND, f"{authority_id} has no identity provider registered here: "
                                 "ask the hub's operator (evx authority provider), or use a "
                                 "token your authority issued (EVX_TOKEN).")
    return SignIn(authority=authority.id, issuer=authority.issuer,
                  client_id=authority.client_id, audience=settings.audience)

