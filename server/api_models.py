"""Pydantic models of the native HTTP API's bodies, queries, headers and responses.

They are the source of ``/openapi.json`` (``server/openapi.py`` turns them into schemas): nothing
in the description is written by hand. Request models that the routes also validate with
(``ActivityIn``, ``PatchIn``) live in ``models.py``; the models here describe what the routes
check by hand (queries, marks, batch envelopes) and what they answer. Limits that come from the
settings (``max_batch``, ``max_page``) are applied by the ``*_model(limit)`` factories, so the
published description says what *this* server accepts.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from .models import (
    ActivityIn,
    ActorRef,
    AudienceType,
    FeedName,
    IdText,
    ObjectRef,
    ShortText,
    TargetRef,
)

#: The most items a notification mark request may name (``copies._MAX_MARK_IDS``).
MAX_MARK_IDS = 1000
#: The largest ``offset`` of a history read.
MAX_OFFSET = 10_000
ActivityId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


# ---------------------------------------------------------------------------------------------
# Errors


class FieldProblem(BaseModel):
    """One invalid field of a 422 (or 413) problem."""

    loc: str = Field(description="Dotted location of the field, e.g. `activities.0.verb`")
    msg: str
    type: str = Field(description="Machine-readable kind, e.g. `missing`, `too_large`")


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:feedserver:problem:invalid",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "verb: Field required",
                    "instance": "/v1/feeds/booking:f4d1/activities",
                    "errors": [{"loc": "verb", "msg": "Field required", "type": "missing"}],
                }
            ]
        },
    )

    type: str = Field(description="`urn:feedserver:problem:<code>`")
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = Field(None, description="Each invalid field (422, some 413)")
    version: int | None = Field(None, description="412 only: the activity's current version")


# ---------------------------------------------------------------------------------------------
# Stored activities


class StoredAudience(BaseModel):
    """An audience entry as stored: always the object form."""

    model_config = ConfigDict(extra="forbid")

    type: AudienceType
    id: IdText | None = None
    notify: bool | None = None


class Activity(BaseModel):
    """A stored activity: the input's fields plus the server-owned ones. Custom fields are kept."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": "01KAZ8Y0A1B2C3D4E5F6G7H8J9",
                    "feed": "booking:f4d1",
                    "actor": {"id": "alexandra", "name": "Alexandra"},
                    "verb": "booking.confirm",
                    "object": {"id": "f4d1", "type": "booking"},
                    "time": "2026-01-14T09:30:00.000Z",
                    "audience": [{"type": "members"}],
                    "updated_at": "2026-01-14T09:30:00.000Z",
                    "seq": 7,
                    "version": 1,
                    "created_at": "2026-01-14T09:30:00.000Z",
                }
            ]
        },
    )

    id: str = Field(description="A ULID whose timestamp is `time`, or the id the client chose")
    feed: FeedName
    seq: int = Field(ge=1, description="Position in the feed's change stream")
    version: int = Field(ge=1, description="Starts at 1; every change adds 1 (the ETag)")
    created_at: str
    updated_at: str
    time: str = Field(description="ISO 8601 UTC with milliseconds, e.g. `2026-01-14T09:30:00.000Z`")
    verb: str
    object: ShortText | ObjectRef
    actor: ActorRef
    audience: list[StoredAudience]
    target: ShortText | TargetRef | None = None
    foreign_id: ShortText | None = None
    to: list[FeedName] | None = None
    origin: FeedName | None = Field(None, description="On a copy (`to`): the feed of the original")


class NotificationActivity(Activity):
    """An activity of the caller's notification feed, with its marks."""

    is_seen: bool
    is_read: bool


class ActivityList(BaseModel):
    """The stored activities of a write, in input order."""

    activities: list[Activity]


class Page(BaseModel):
    """One history page, newest first; ``next`` is the URL of the following page (null at the end)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"results": [], "next": None, "hidden": 3}]},
    )

    results: list[Activity]
    next: str | None
    hidden: int = Field(
        ge=0,
        description="How many activities scanned for this page the caller may not see (their audience "
        "leaves the caller out); only their number is told. 0 for feed admins.",
    )


class NotificationPage(BaseModel):
    """A page of the caller's notification feed with its unseen/unread counts."""

    results: list[NotificationActivity]
    next: str | None
    unseen: int = Field(ge=0)
    unread: int = Field(ge=0)


class Counts(BaseModel):
    """The notification feed's counts after a mark."""

    unseen: int = Field(ge=0)
    unread: int = Field(ge=0)


class Removed(BaseModel):
    """How many activities a delete by ``foreign_id`` removed."""

    removed: int = Field(ge=0)


class ItemOutcome(BaseModel):
    """One item of a batch update: its HTTP-like status and the stored activity or the problem."""

    index: int = Field(ge=0)
    status: int
    activity: Activity | None = None
    error: Problem | None = None


class Outcomes(BaseModel):
    """The result of a batch update: one outcome per item, in input order."""

    results: list[ItemOutcome]
    succeeded: int = Field(ge=0)
    failed: int = Field(ge=0)


class Health(BaseModel):
    """``/healthz``: the process answers."""

    status: Literal["ok"]


class Ready(BaseModel):
    """``/readyz`` when Redis and the pub/sub path answer."""

    status: Literal["ready"]
    redis_ms: float = Field(ge=0, description="Round trip of a PING and a pub/sub probe")


class NotReady(BaseModel):
    """``/readyz`` while Redis is unreachable or the process is draining."""

    status: Literal["unavailable"]
    detail: str


class Index(BaseModel):
    """``GET /``: where to go from here."""

    name: str
    version: str
    docs: str
    openapi: str
    asyncapi: str
    websocket: str
    demo: str | None = Field(None, description="The live dashboard, when `[server] demo` is on")


# ---------------------------------------------------------------------------------------------
# Requests (what the routes check by hand)


class PatchRequest(BaseModel):
    """``PATCH``: set and unset dotted paths (at most 25 each); ``version`` is an optional precondition."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"set": {"text": "Moved to 3 pm", "guests": 3}}],
            "anyOf": [  # at least one path to set or unset
                {"required": ["set"], "properties": {"set": {"minProperties": 1}}},
                {"required": ["unset"], "properties": {"unset": {"minItems": 1}}},
            ],
        },
    )

    set: dict[str, Any] = Field(default_factory=dict, max_length=25)
    unset: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list, max_length=25)
    version: int | None = Field(None, ge=1)


class MarkIds(BaseModel):
    """Mark these notification ids."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ids": ["01KAZ8Y0A1B2C3D4E5F6G7H8J9"]}]})

    ids: list[ActivityId] = Field(min_length=1, max_length=MAX_MARK_IDS)


class MarkAll(BaseModel):
    """Mark every notification."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"all": True}]})

    all: Literal[True]


MarkRequest = MarkIds | MarkAll


class FeedPath(BaseModel):
    """Path parameters of a feed."""

    feed: FeedName = Field(description="1-128 characters of `A-Z a-z 0-9 _ - : . @`, e.g. `booking:f4d1`")


class ActivityPath(FeedPath):
    """Path parameters of one activity."""

    activity_id: ActivityId


class IfMatch(BaseModel):
    """The optimistic-lock precondition of a change."""

    if_match: Annotated[str, StringConstraints(pattern=r'^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$')] | None = Field(
        None, alias="If-Match", description='The version you read, e.g. `"3"` (stale → 412)'
    )


class ForeignIdQuery(BaseModel):
    """``DELETE …/activities?foreign_id=``."""

    foreign_id: ShortText = Field(description="Every activity of the feed with this foreign_id is removed")


@cache
def batch_model(max_batch: int) -> type[BaseModel]:
    """``{"activities": [...]}``: a batch of up to ``max_batch`` activities, written all or nothing."""
    return create_model(
        "ActivityBatch",
        __config__=ConfigDict(
            extra="forbid",
            json_schema_extra={
                "examples": [
                    {"activities": [{"verb": "comment", "object": "f4d1"}, {"verb": "like", "object": "f4d1"}]}
                ]
            },
        ),
        __doc__=batch_model.__doc__,
        activities=(list[ActivityIn], Field(min_length=1, max_length=max_batch)),
    )


class BatchUpdateItem(ActivityIn):
    """A full replacement addressed by ``feed`` + ``foreign_id`` + ``time``."""

    feed: FeedName
    foreign_id: ShortText
    time: datetime


@cache
def batch_update_model(max_batch: int) -> type[BaseModel]:
    """``POST /v1/activities/update``: up to ``max_batch`` full replacements."""
    return create_model(
        "BatchUpdate",
        __config__=ConfigDict(extra="forbid"),
        __doc__=batch_update_model.__doc__,
        activities=(list[BatchUpdateItem], Field(min_length=1, max_length=max_batch)),
    )


class PartialChange(PatchRequest):
    """A partial update addressed by ``feed`` + ``id``, or ``feed`` + ``foreign_id`` + ``time``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"feed": "booking:f4d1", "id": "01KAZ8Y0A1B2C3D4E5F6G7H8J9", "set": {"text": "edited"}}]
        },
    )

    feed: FeedName
    id: ActivityId | None = None
    foreign_id: ShortText | None = None
    time: str | None = Field(None, description="ISO 8601; with foreign_id")


@cache
def batch_partial_model(max_batch: int) -> type[BaseModel]:
    """``POST /v1/activities/partial-update``: up to ``max_batch`` partial updates."""
    return create_model(
        "BatchPartialUpdate",
        __config__=ConfigDict(extra="forbid"),
        __doc__=batch_partial_model.__doc__,
        changes=(list[PartialChange], Field(min_length=1, max_length=max_batch)),
    )


@cache
def page_query_model(max_page: int) -> type[BaseModel]:
    """Query parameters of a history page (``limit`` at most ``max_page``)."""
    return create_model(
        "PageQuery",
        __doc__=page_query_model.__doc__,
        limit=(int, Field(25, ge=1, le=max_page, description=f"Page size (at most {max_page})")),
        id_lt=(str | None, Field(None, description="Older than this activity id")),
        id_lte=(str | None, Field(None, description="This id and older")),
        id_gt=(str | None, Field(None, description="Newer than this id (the nearest ones, listed newest first)")),
        id_gte=(str | None, Field(None, description="This id and newer")),
        offset=(int, Field(0, ge=0, le=MAX_OFFSET, description="Skip this many matching activities")),
        verb=(str | None, Field(None, description="Only this verb")),
        actor=(str | None, Field(None, description="Only this actor id")),
    )
