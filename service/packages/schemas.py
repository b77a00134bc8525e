"""Request and response bodies of the package endpoints (the OpenAPI contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_TEXT = dict(min_length=1)


class PackageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_reference: str = Field(min_length=1, max_length=200,
                                description="The investigating authority's case reference.")
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=10_000)


_NAME_DOC = ("The item name: the exact path bytes in the text form of docs/api.md (UTF-8 "
             "characters as themselves, '%' as %25, other bytes as %XX).")


class ItemOut(BaseModel):
    name: str = Field(description=_NAME_DOC)
    kind: Literal["file", "link", "directory"] = "file"
    target: str | None = Field(default=None, description="A link's target, as recorded "
                                                         "(text form), never resolved.")
    size: int = Field(description="Bytes of a file; of a link's target; 0 for a directory.")
    sha256: str = Field(description="Lowercase hex SHA-256 of the item's plaintext (of a link's "
                                    "target bytes; of no bytes for a directory).")
    uploaded_at: datetime
    uploaded_by: str


class EntryCreate(BaseModel):
    """A symbolic link or an empty directory, added as an item without content."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=12_288, description=_NAME_DOC)
    kind: Literal["link", "directory"]
    target: str | None = Field(default=None, min_length=1, max_length=12_288,
                               description="A link's target (text form); absent for a "
                                           "directory.")


class ReceiptCreate(BaseModel):
    """What the recipient verified: the manifest hash over the items it checked."""

    model_config = ConfigDict(extra="forbid")
    manifest_sha256: str = Field(pattern="^[0-9a-f]{64}$", description=(
        "SHA-256 of the manifest (as at seal) computed by the recipient over the names, kinds, "
        "sizes and SHA-256 digests of the items it received and verified."))
    items: int = Field(ge=0, le=10_000_000)
    bytes: int = Field(ge=0, le=2**53 - 1)


class ReceiptOut(BaseModel):
    ledger_index: int
    matches_seal: bool = Field(description="The manifest equals the one recorded at seal.")


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
