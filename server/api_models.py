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
    reaction_counts: dict[str, int] | None = Field(None, description="Reads with `with_reaction_counts`: kind → n")
    latest_reactions: dict[str, list[dict[str, Any]]] | None = Field(
        None, description="Reads with `with_recent_reactions`: kind → the newest reactions"
    )
    own_reactions: dict[str, list[dict[str, Any]]] | None = Field(
        None, description="Reads with `with_own_reactions`: kind → the caller's reactions"
    )


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
    """Mark these notification ids (other keys are ignored)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ids": ["01KAZ8Y0A1B2C3D4E5F6G7H8J9"]}]})

    ids: list[ActivityId] = Field(min_length=1, max_length=MAX_MARK_IDS)


class MarkAll(BaseModel):
    """Mark every notification."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"all": True}]})

    all: Literal[True] = Field(description="Without `ids` (with both, `ids` decide)")


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

    foreign_id: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="Every activity of the feed with this foreign_id is removed (none when no activity has it)"
    )


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


# ---------------------------------------------------------------------------------------------
# Follows, reactions, users, collections and feed groups (SPEC §12)
#
# The handlers (``follow_routes.py``, ``model_routes.py``) check these bodies by hand and keep
# keys they do not know (no ``extra="forbid"``: such keys are ignored, as GetStream does).

#: Largest follower/following page (``follow_routes.MAX_LIST``).
MAX_FOLLOW_LIST = 500
#: Follow relations per ``/v1/follows`` or ``/v1/unfollows`` call (``follow_service.MAX_BATCH``).
MAX_FOLLOW_BATCH = 2500
#: Largest ``activity_copy_limit`` (``follow_service.MAX_COPY_LIMIT``).
MAX_COPY_LIMIT = 1000
#: Largest reaction page (``reactions.MAX_LIMIT``).
MAX_REACTIONS = 100
#: A user, object or reaction id: 1-128 printable characters, no ``{`` (``objects._ident``).
ObjectId = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f-\x9f{]{1,128}$")]
#: A reaction's kind, or a reference to an activity or reaction: 1-255 printable characters.
KindText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f-\x9f]{1,255}$")]
RefText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f-\x9f]{1,128}$")]
#: Comma-separated values (empty items are skipped).
CommaList = str
#: Comma-separated feed names.
FeedNameList = Annotated[str, StringConstraints(pattern=r"^([A-Za-z0-9_\-:.@]{1,128}(,[A-Za-z0-9_\-:.@]{1,128})*)?$")]
#: A query flag: ``true``, ``1`` or ``yes`` (any case) turn it on, any other value leaves it off.
Flag = str


class FollowIn(BaseModel):
    """``POST /v1/feeds/{feed}/follows``: follow ``target``, copying its newest activities."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"target": "user:bob", "activity_copy_limit": 10}]})

    target: FeedName = Field(description="The feed to follow")
    activity_copy_limit: int | None = Field(
        None, ge=0, le=MAX_COPY_LIMIT, description="How many of its newest activities are copied now (default 100)"
    )


class Follow(BaseModel):
    """One follow relation: ``feed_id`` follows ``target_id`` since ``created_at``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"feed_id": "timeline:alice", "target_id": "user:bob", "created_at": "2026-01-14T09:30:00.000Z"}
            ]
        }
    )

    feed_id: FeedName
    target_id: FeedName
    created_at: str


class Followed(BaseModel):
    """The follow made."""

    follow: Follow


class FollowList(BaseModel):
    """Follow relations, newest first."""

    results: list[Follow]


class FollowPath(FeedPath):
    """Path parameters of one follow relation."""

    target: FeedName = Field(description="The followed feed")


class UnfollowQuery(BaseModel):
    """``DELETE …/follows/{target}``."""

    keep_history: Flag = Field("false", description="`true`: keep the copies already in the feed")


class FollowListQuery(BaseModel):
    """A page of follow relations."""

    limit: int = Field(25, ge=1, le=MAX_FOLLOW_LIST, description=f"Page size (at most {MAX_FOLLOW_LIST})")
    offset: int = Field(0, ge=0, le=1_000_000, description="Relations to skip")
    filter: FeedNameList | None = Field(None, description="Only these feeds (comma-separated feed names)")


class FollowStatsQuery(BaseModel):
    """Count only the feeds of these groups (comma-separated slugs)."""

    followers_slugs: CommaList | None = Field(None, description="e.g. `timeline,news`")
    following_slugs: CommaList | None = Field(None, description="e.g. `user`")


class FollowCount(BaseModel):
    """A follower or following count of one feed."""

    feed: FeedName
    count: int = Field(ge=0)


class FollowCounts(BaseModel):
    """The follower and following counts."""

    followers: FollowCount
    following: FollowCount


class FollowStats(BaseModel):
    """``GET …/follow_stats``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": {
                        "followers": {"feed": "user:bob", "count": 2},
                        "following": {"feed": "user:bob", "count": 0},
                    }
                }
            ]
        }
    )

    results: FollowCounts


class FollowPair(BaseModel):
    """``source`` follows ``target``."""

    source: FeedName
    target: FeedName


class UnfollowPair(FollowPair):
    """``source`` stops following ``target`` (its copies go unless ``keep_history``)."""

    keep_history: bool = False


class FollowMany(BaseModel):
    """``POST /v1/follows``: many follows, all checked before any is made (a bare list works too)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"follows": [{"source": "timeline:alice", "target": "user:bob"}]}]}
    )

    follows: list[FollowPair] = Field(min_length=1, max_length=MAX_FOLLOW_BATCH)
    activity_copy_limit: int | None = Field(None, ge=0, le=MAX_COPY_LIMIT)


class UnfollowMany(BaseModel):
    """``POST /v1/unfollows``: many unfollows (a bare list works too)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"follows": [{"source": "timeline:alice", "target": "user:bob"}]}]}
    )

    follows: list[UnfollowPair] = Field(min_length=1, max_length=MAX_FOLLOW_BATCH)


FollowManyBody = FollowMany | Annotated[list[FollowPair], Field(min_length=1, max_length=MAX_FOLLOW_BATCH)]
UnfollowManyBody = UnfollowMany | Annotated[list[UnfollowPair], Field(min_length=1, max_length=MAX_FOLLOW_BATCH)]


class FollowsMade(BaseModel):
    """The follows made, in input order."""

    follows: list[Follow]


class Unfollowed(BaseModel):
    """How many of the relations existed."""

    removed: int = Field(ge=0)


# -- reactions


class ReactionOnActivity(BaseModel):
    """A reaction to an activity of ``feed`` (the caller must see it)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"kind": "like", "activity_id": "01KAZ8Y0A1B2C3D4E5F6G7H8J9", "feed": "user:bob", "data": {"x": 1}}
            ]
        }
    )

    kind: KindText = Field(description="e.g. like, comment")
    activity_id: RefText
    feed: FeedName = Field(description="A feed holding the activity (a follow copy's reactions go to the original)")
    data: dict[str, Any] | None = Field(None, description="Free JSON, at most 10 KB")
    target_feeds: list[FeedName] | None = Field(
        None, max_length=100, description="Feeds that also get an activity for this reaction (needs write there)"
    )
    user_id: RefText | None = Field(None, description="React as another user (admins only); default: the caller")
    id: ObjectId | None = Field(None, description="A client-chosen id (409 when taken)")


class ChildReaction(BaseModel):
    """A reaction to a reaction (``parent``)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"kind": "reply", "parent": "01KAZ8Y0A1B2C3D4E5F6G7H8J9"}]}
    )

    kind: KindText
    parent: RefText = Field(description="The reaction reacted to")
    data: dict[str, Any] | None = None
    target_feeds: list[FeedName] | None = Field(None, max_length=100)
    user_id: RefText | None = None
    id: ObjectId | None = None


ReactionIn = ReactionOnActivity | ChildReaction


class ReactionData(BaseModel):
    """``PUT /v1/reactions/{id}``: the new data."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": {"text": "edited"}}]})

    data: dict[str, Any] = Field(description="Free JSON, at most 10 KB")


class Reaction(BaseModel):
    """A stored reaction."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": "01KAZ8Y0A1B2C3D4E5F6G7H8J9",
                    "kind": "like",
                    "activity_id": "01KAZ8Y0A1B2C3D4E5F6G7H8J8",
                    "user_id": "alice",
                    "data": {},
                    "parent": "",
                    "target_feeds": [],
                    "created_at": "2026-01-14T09:30:00.000Z",
                    "updated_at": "2026-01-14T09:30:00.000Z",
                }
            ]
        },
    )

    id: str
    kind: str
    activity_id: str
    user_id: str
    data: dict[str, Any]
    parent: str = Field(description="The parent reaction's id, empty for a reaction to an activity")
    target_feeds: list[str]
    created_at: str
    updated_at: str


class ReactionList(BaseModel):
    """Reactions, newest first."""

    results: list[Reaction]


class IdPath(BaseModel):
    """Path parameter of one reaction or user."""

    id: ObjectId


class ReactionListQuery(BaseModel):
    """Reactions of an activity (``activity_id`` + ``feed``), of a reaction (``reaction_id``), or of a user
    (``user_id``): one of the three is required."""

    activity_id: RefText | None = Field(None, description="With `feed`")
    feed: FeedName | None = None
    reaction_id: RefText | None = Field(None, description="Child reactions of this one")
    user_id: RefText | None = Field(None, description="That user's reactions (the user itself or an admin)")
    kind: KindText | None = None
    limit: int = Field(25, ge=1, le=MAX_REACTIONS)
    id_lt: str | None = Field(None, description="Older than this reaction id")
    id_gt: str | None = Field(None, description="Newer than this reaction id")


# -- users and collections


class UserIn(BaseModel):
    """``POST /v1/users``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "alice", "data": {"name": "Alice"}}]})

    id: ObjectId
    data: dict[str, Any] | None = Field(None, description="Free JSON, at most 10 KB")


class UserQuery(BaseModel):
    """``POST /v1/users``."""

    get_or_create: Flag = Field("false", description="`true`: answer the existing user (200) instead of 409")


class DataIn(BaseModel):
    """``PUT``: the new data."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": {"name": "Alice B."}}]})

    data: dict[str, Any] | None = Field(None, description="Free JSON, at most 10 KB")


class User(BaseModel):
    """A stored user."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "alice",
                    "data": {"name": "Alice"},
                    "created_at": "2026-01-14T09:30:00.000Z",
                    "updated_at": "2026-01-14T09:30:00.000Z",
                }
            ]
        }
    )

    id: str
    data: dict[str, Any]
    created_at: str
    updated_at: str


class ObjectIn(BaseModel):
    """``POST /v1/collections/{collection}``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "pizza", "data": {"name": "Pizza"}}]})

    id: ObjectId | None = Field(None, description="Default: a new id")
    data: dict[str, Any] | None = Field(None, description="Free JSON, at most 10 KB")
    user_id: ObjectId | None = Field(None, description="The owner (admins only for another user); default: the caller")


class CollectionObject(BaseModel):
    """A stored collection object (referenced as ``SO:<collection>:<id>``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "pizza",
                    "collection": "food",
                    "foreign_id": "food:pizza",
                    "data": {"name": "Pizza"},
                    "user_id": "alice",
                    "created_at": "2026-01-14T09:30:00.000Z",
                    "updated_at": "2026-01-14T09:30:00.000Z",
                }
            ]
        }
    )

    id: str
    collection: str
    foreign_id: str
    data: dict[str, Any]
    user_id: str
    created_at: str
    updated_at: str


class CollectionPath(BaseModel):
    """Path parameter of a collection."""

    collection: ObjectId


class ObjectPath(CollectionPath):
    """Path parameters of one collection object."""

    id: ObjectId


class UpsertItem(BaseModel):
    """One object of an upsert: ``id``, ``user_id`` and ``data`` (or, as GetStream sends it, the other
    fields are the data)."""

    model_config = ConfigDict(extra="allow")

    id: ObjectId | None = None
    user_id: ObjectId | None = None
    data: dict[str, Any] | None = None


class UpsertObjects(BaseModel):
    """``POST /v1/collections``: create or replace many objects."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": {"food": [{"id": "pizza", "name": "Pizza"}]}}]})

    data: dict[str, list[UpsertItem]] = Field(description="Collection name → objects")


class UpsertedObjects(BaseModel):
    """The stored objects, by collection."""

    data: dict[str, list[CollectionObject]]


class SelectQuery(BaseModel):
    """``GET /v1/collections``."""

    foreign_ids: CommaList | None = Field(None, description="`collection:id`, comma-separated (at most 1000)")


class SelectedData(BaseModel):
    """The objects found (unknown ones are left out)."""

    data: list[CollectionObject]


class SelectedObjects(BaseModel):
    """``GET /v1/collections`` (GetStream's envelope)."""

    response: SelectedData


# -- feed groups and enrichment


class Group(BaseModel):
    """A group of an aggregated or notification feed: activities whose aggregation format renders the same."""

    id: str = Field(description="The group id (pass it as `id_lt` for the next page)")
    group: str = Field(description="The rendered aggregation format")
    verb: str | None
    activities: list[Activity]
    activity_count: int = Field(ge=0)
    actor_count: int = Field(ge=0)
    created_at: str | None
    updated_at: str | None
    is_seen: bool | None = Field(None, description="Notification feeds: every activity seen")
    is_read: bool | None = Field(None, description="Notification feeds: every activity read")


class GroupPage(BaseModel):
    """Groups newest first (notification feeds: with the unseen/unread group counts)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"results": [], "next": None}]})

    results: list[Group]
    next: str | None = Field(description="The group id to pass as `id_lt`; null at the end")
    unseen: int | None = Field(None, ge=0)
    unread: int | None = Field(None, ge=0)


class MarkGroupIds(BaseModel):
    """Mark these groups."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ids": ["notification:bob:like"]}]})

    ids: list[Any] = Field(description="Group ids (other groups, and unknown ids, are left alone)")


class MarkEveryGroup(BaseModel):
    """Mark every group."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"all": True}]})

    all: Literal[True]


MarkGroups = MarkGroupIds | MarkEveryGroup


class EnrichQuery(BaseModel):
    """How a feed read enriches its activities (GetStream's spellings ``withOwnReactions``,
    ``withRecentReactions``, ``withReactionCounts``, ``reactionKindsFilter`` and
    ``recentReactionsLimit`` work too)."""

    with_own_reactions: Flag = Field("false", description="`true`: add `own_reactions: {kind: [...]}`")
    with_recent_reactions: Flag = Field("false", description="`true`: add `latest_reactions: {kind: [...]}`")
    with_reaction_counts: Flag = Field("false", description="`true`: add `reaction_counts: {kind: n}`")
    reaction_kinds: CommaList | None = Field(None, description="Only these kinds (comma-separated)")
    recent_reactions_limit: str = Field(
        "10", description=f"Reactions per kind: a number, clamped to 1..{MAX_REACTIONS} (otherwise 10)"
    )
    enrich: str = Field(
        "true", description="`false`, `0` or `no`: leave `SU:<user>` and `SO:<collection>:<id>` references as they are"
    )
    discard_actors: CommaList | None = Field(None, description="Leave out these actors' activities (GDPR)")
    discard_actors_sep: str = Field(",", description="The separator of `discard_actors` (empty: `,`)")


class GroupQuery(EnrichQuery):
    """A page of groups."""

    limit: int = Field(25, ge=1, le=100)
    id_lt: str | None = Field(None, description="Groups after this group id")
    offset: int = Field(0, ge=0, le=1000)
    mark_seen: CommaList | None = Field(None, description="Notification feeds: `true`, or group ids, marked seen")
    mark_read: CommaList | None = Field(None, description="Notification feeds: `true`, or group ids, marked read")


@cache
def feed_page_query_model(max_page: int) -> type[BaseModel]:
    """Query parameters of a feed's history page: the page bounds and the enrichment."""
    return create_model(
        "FeedPageQuery", __base__=(page_query_model(max_page), EnrichQuery), __doc__=feed_page_query_model.__doc__
    )


class DemoFeedGroup(BaseModel):
    """One configured feed group, as the dashboard needs it."""

    type: Literal["flat", "aggregated", "notification"]


class DemoFeedGroups(BaseModel):
    """``GET /demo/feed-groups.json``: the type of each configured feed group (by slug)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"feed_groups": {"notifications": {"type": "notification"}}}]}
    )

    feed_groups: dict[str, DemoFeedGroup]
