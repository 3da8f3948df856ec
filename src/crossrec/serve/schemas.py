"""Request and response documents of the HTTP API (they make up ``docs/openapi.json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: what went wrong and, for a client mistake, which field."""

    error: str = Field(description="What went wrong and what to do about it.")
    field: str | None = Field(
        default=None,
        description="The offending field, e.g. `query.k`, `path.platform`, `body[3].account`.",
    )


class EventRecord(BaseModel):
    """One canonical event. Keys other than these are kept as the event's attributes.

    Records are validated like file ingest (no account, unreadable timestamp, an object as
    an id...). By default a batch with a bad record is refused whole with 422 and every bad
    record's index, field and reason; with ``on_error=quarantine`` bad records are quarantined
    with their number and reason and the others are stored.
    """

    model_config = ConfigDict(extra="allow")

    account: str | int | None = Field(default=None, description="Raw account id (required).")
    item: str | int | None = Field(default=None, description="Item id (required).")
    event: str | None = Field(default=None, description="Event type, e.g. view, rating.")
    value: float | str | None = Field(default=None, description="Rating or amount.")
    timestamp: str | float | None = Field(
        default=None, description="ISO-8601 time or epoch seconds."
    )
    event_id: str | int | None = Field(
        default=None, description="Id that makes a retried post idempotent."
    )


class EventError(BaseModel):
    """Why one event of a POSTed batch is invalid."""

    index: int = Field(description="Position of the event in the array, from 0.")
    field: str | None = Field(description="The offending field, e.g. `account`, `value`.")
    reason: str = Field(description="What is wrong, as the quarantine would say it.")


class BatchErrors(BaseModel):
    """A batch refused whole (the default, ``on_error=reject``): nothing of it was stored."""

    error: str = Field(description="How many events are invalid; nothing was stored.")
    field: str | None = Field(default=None, description="The first offending field.")
    errors: list[EventError] = Field(
        default_factory=list,
        description="Every invalid event, in array order (absent when the parameters or the "
        "body as a whole are to blame).",
    )


class IngestResult(BaseModel):
    accepted: int = Field(description="Events stored.")
    quarantined: int = Field(description="Records refused, kept in the quarantine.")
    duplicates: int = Field(description="Events already stored (same event_id).")


class RecommendedItem(BaseModel):
    item: str
    score: float
    reason: str
    title: str | None = Field(default=None, description="The catalogue's title, else null.")
    category: str | None = Field(default=None, description="The catalogue's category, else null.")


class Recommendations(BaseModel):
    platform: str
    account: str = Field(description="The raw account id as sent.")
    items: list[RecommendedItem]
    model_version: str


class LinkedAccount(BaseModel):
    platform: str
    account: str = Field(description="The raw id for the caller's account, else a pseudonym.")
    account_raw: str | None = Field(
        default=None, description="Its raw id where the server holds it (`serve --ids`)."
    )


class LinkEdge(BaseModel):
    platform_a: str
    account_a: str
    platform_b: str
    account_b: str
    probability: float
    rank: int | None
    source: str
    status: str = Field(default="asserted", description="asserted, probable or known.")
    evidence: list[Any]
    account_a_raw: str | None = Field(
        default=None, description="Raw id of side a where the server holds it (`serve --ids`)."
    )
    account_b_raw: str | None = Field(default=None, description="Raw id of side b, likewise.")


class PersonLinks(BaseModel):
    platform: str
    account: str
    person: int | None = Field(description="Person id in the identity graph, if linked.")
    accounts: list[LinkedAccount]
    links: list[LinkEdge]


class SimilarAccount(BaseModel):
    platform: str
    account: str = Field(description="Pseudonym.")
    account_raw: str | None = Field(
        default=None, description="Its raw id where the server holds it (`serve --ids`)."
    )
    similarity: float
    top_categories: list[str]


class SimilarAccounts(BaseModel):
    platform: str
    account: str
    on: str
    similar: list[SimilarAccount]
    model_version: str
    top_categories: list[str]


class VectorFlags(BaseModel):
    cf: bool
    sequence: bool
    text: bool


class AccountProfile(BaseModel):
    platform: str
    account: str
    events: int
    first_event: str | None = Field(description="ISO-8601 UTC; null without timestamps.")
    last_event: str | None
    active_days: int = Field(description="Distinct UTC dates with events.")
    event_types: dict[str, int]
    person: int | None
    model_version: str | None
    in_model: bool = Field(description="The served model was trained with this account.")
    updated_online: bool = Field(description="Vectors refreshed from events after training.")
    top_categories: list[str]
    vectors: VectorFlags


class Erased(BaseModel):
    deleted_until: str = Field(description="ISO-8601 UTC: events up to here are erased.")
    accounts: int = Field(description="Accounts erased.")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    model_version: str | None
    store: bool
