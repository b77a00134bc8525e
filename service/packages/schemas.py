"""Request and response bodies of the package endpoints (the OpenAPI contract)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

_TEXT = dict(min_length=1)


class PackageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_reference: str = Field(min_length=1, max_length=200,
                                description="The investigating authority's case reference.")
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=10_000)


class ItemOut(BaseModel):
    name: str
    size: int
    sha256: str = Field(description="Lowercase hex SHA-256 of the item's plaintext.")
    uploaded_at: datetime
    uploaded_by: str


class ShareOut(BaseModel):
    authority: str
    legal_basis: str
    request_reference: str
    expires_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None
    active: bool


class PackageOut(BaseModel):
    id: str
    owner_authority: str
    case_reference: str
    title: str
    description: str
    created_by: str
    created_at: datetime
    sealed: bool
    sealed_at: datetime | None
    manifest_sha256: str | None
    items: list[ItemOut]
    shares: list[ShareOut] | None = Field(
        default=None, description="Present for the owning authority only.")
    share: ShareOut | None = Field(
        default=None, description="For a recipient: the share with the caller's authority.")


class PackageList(BaseModel):
    packages: list[PackageOut]


class SealOut(BaseModel):
    id: str
    sealed_at: datetime
    manifest_sha256: str
    ledger_index: int


class ShareCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    authority: str = Field(min_length=1, max_length=64, description="Recipient authority id.")
    legal_basis: str = Field(min_length=1, max_length=500,
                             description="e.g. the MLA treaty article or EIO directive.")
    request_reference: str = Field(min_length=1, max_length=200,
                                   description="The mutual-assistance request reference.")
    expires_at: datetime | None = Field(default=None,
                                        description="RFC 3339 with a time zone; must be future.")
