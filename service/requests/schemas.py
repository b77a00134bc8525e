"""Request and response bodies of the request endpoints (the OpenAPI contract)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.requests.deadlines import Instrument, Urgency


class RequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    executing_authority: str = Field(min_length=1, max_length=64,
                                     description="The authority asked to execute the request.")
    instrument: Instrument
    reference: str = Field(min_length=1, max_length=200,
                           description="The requesting authority's reference of the request.")
    case_reference: str = Field(min_length=1, max_length=200)
    offence_category: str = Field(min_length=1, max_length=200,
                                  description="e.g. the Directive 2014/41/EU Annex D category.")
    measures: list[str] = Field(min_length=1, max_length=50,
                                description="The investigative measures requested.")
    urgency: Urgency = Urgency.NORMAL
    confidentiality: str = Field(default="", max_length=10_000,
                                 description="Confidentiality note for the executing side.")
    attachments_package: str | None = Field(
        default=None, max_length=40,
        description="A sealed package of the requesting authority with the signed form and "
                    "annexes; filing shares it with the executing authority.")


class TransitionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=10_000,
                      description="Grounds (refuse, postpone), questions (ask) or answers.")
    until: datetime | None = Field(default=None,
                                   description="postpone: until when (RFC 3339 with zone).")


class DeliveryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    package: str = Field(min_length=1, max_length=40,
                         description="A sealed package of the executing authority.")
    expires_at: datetime | None = Field(default=None,
                                        description="When the share ends (RFC 3339 with zone).")


class DeadlineOut(BaseModel):
    milestone: str
    due_at: datetime = Field(description="UTC.")
    due_local: str = Field(description="The same instant in the deadline's time zone.")
    rule: str = Field(description="e.g. '30 days'.")
    source: str = Field(description="Where the rule comes from.")
    open: bool
    met_at: datetime | None
    overdue: bool


class HistoryOut(BaseModel):
    action: str
    state: str
    at: datetime
    authority: str
    subject: str
    note: str
    ledger_index: int


class DeliveryOut(BaseModel):
    package: str
    manifest_sha256: str
    delivered_at: datetime
    delivered_by: str
    ledger_index: int
    items_downloaded: int | None = Field(
        default=None, description="Distinct items the requesting authority downloaded in full.")


class NextDeadlineOut(BaseModel):
    milestone: str
    due_at: datetime
    due_local: str
    overdue: bool


class RequestOut(BaseModel):
    id: str
    requesting_authority: str
    executing_authority: str
    instrument: str
    legal_basis: str
    reference: str
    case_reference: str
    offence_category: str
    measures: list[str]
    urgency: str
    confidentiality: str
    attachments_package: str | None
    state: str
    timezone: str = Field(description="Deadlines count in this zone (the executing side's).")
    filed_by: str
    filed_at: datetime
    updated_at: datetime
    next_deadline: NextDeadlineOut | None
    deadlines: list[DeadlineOut] | None = Field(default=None, description="On GET one request.")
    history: list[HistoryOut] | None = None
    deliveries: list[DeliveryOut] | None = None


class RequestList(BaseModel):
    requests: list[RequestOut]


class RuleOut(BaseModel):
    milestone: str
    amount: int
    unit: str
    source: str


class RulesRow(BaseModel):
    instrument: str
    urgency: str
    rules: list[RuleOut]


class RulesOut(BaseModel):
    rules: list[RulesRow]
