"""Pydantic models of the GetStream ``/api/v1.0/`` routes and of ``/faye``, for ``/openapi.json`` only.

The handlers (``api.py``) parse GetStream's loose JSON themselves (their errors are GetStream's
``InputException`` shape); these models describe what the official clients send and get, so the
description follows the real answers (``tests/test_openapi.py`` validates them). Activities keep
any custom field (``extra="allow"``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class GsFeedPath(BaseModel):
    """A GetStream feed: ``<slug>:<user_id>`` in our names."""

    slug: str = Field(description="Feed group (slug), e.g. user")
    user_id: str = Field(description="Feed id within the group")


class GsRemovePath(GsFeedPath):
    """One activity of a feed, by id (or foreign id with ``?foreign_id=1``)."""

    activity_id: str = Field(description="Activity id, or its foreign_id with ?foreign_id=1")


class GsAuthQuery(BaseModel):
    """Every call carries the app's key."""

    api_key: str = Field(description="The app's API key ([getstream] api_key)")


class GsRemoveQuery(GsAuthQuery):
    """Remove by foreign id instead of id."""

    foreign_id: str | None = Field(None, description="1/true: the path names a foreign_id")


class GsReadQuery(GsAuthQuery):
    """Newest first: page size, offset and id bounds."""

    limit: int | None = Field(None, description="Page size (default 25, at most [feeds] max_page)")
    offset: int | None = Field(None, description="Activities to skip")
    id_lt: str | None = Field(None, description="Only activities older than this id")
    id_lte: str | None = Field(None, description="This id and older")
    id_gt: str | None = Field(None, description="Only activities newer than this id")
    id_gte: str | None = Field(None, description="This id and newer")


class GsActivitiesQuery(GsAuthQuery):
    """Activities app-wide: by ids, or by foreign ids paired with their times."""

    ids: str | None = Field(None, description="Comma-separated activity ids")
    foreign_ids: str | None = Field(None, description="Comma-separated foreign ids (with timestamps)")
    timestamps: str | None = Field(None, description="Comma-separated times, one per foreign id")


class GsActivityIn(_Open):
    """An activity as the clients send it (custom fields allowed)."""

    actor: Any = Field(description="Who (a string, or a reference)")
    verb: str
    object: Any
    foreign_id: str | None = None
    time: str | None = Field(None, description="ISO 8601 UTC, no offset (GetStream's form)")
    to: list[str] | None = Field(None, description="Other feeds to copy to (slug:user_id)")
    target: Any = None


class GsActivity(_Open):
    """A stored activity in GetStream's shape (custom fields kept)."""

    id: str
    actor: Any = None
    verb: str | None = None
    object: Any = None
    time: str | None = None
    foreign_id: str | None = None


class GsActivitiesIn(BaseModel):
    """Several activities at once."""

    activities: list[GsActivityIn]


class GsAddToMany(BaseModel):
    """The same activity (one id) added to each feed."""

    activity: GsActivityIn
    feeds: list[str] = Field(description="Feed ids (slug:user_id)")


class GsChange(BaseModel):
    """A partial update of one activity (by id, or foreign_id + time)."""

    id: str | None = None
    foreign_id: str | None = None
    time: str | None = None
    set: dict[str, Any] | None = Field(None, description="Dotted path → new value")
    unset: list[str] | None = Field(None, description="Dotted paths to remove")


class GsChanges(BaseModel):
    """Partial updates."""

    changes: list[GsChange]


class GsTargets(BaseModel):
    """New ``to`` targets of an activity (or targets added/removed)."""

    foreign_id: str
    time: str
    new_targets: list[str] | None = None
    added_targets: list[str] | None = None
    removed_targets: list[str] | None = None


class GsDone(BaseModel):
    """An answer with only the server time spent."""

    duration: str = Field(description="Server time, e.g. 1.23ms")


class GsAdded(GsActivity):
    """The stored activity (with ``duration``)."""

    duration: str


class GsAddedMany(GsDone):
    """The stored activities."""

    activities: list[GsActivity]


class GsResults(GsDone):
    """Activities found (groups on an aggregated or notification feed)."""

    results: list[GsActivity]
    next: str | None = Field(None, description="URL of the next page, empty at the end")


class GsRemoved(GsDone):
    """The id (or foreign id) removed; unknown ids are fine."""

    removed: str


class GsRetargeted(GsDone):
    """The activity with its new targets, and the targets added and removed."""

    activity: GsActivity
    added: list[str]
    removed: list[str]


class GsError(BaseModel):
    """GetStream's error document (the clients raise by ``code``)."""

    code: int = Field(description="GetStream error code, e.g. 4 InputException, 6 DoesNotExistException")
    detail: str
    duration: str
    exception: str = Field(description="GetStream exception name")
    status_code: int
    exception_fields: dict[str, Any] | None = None


# -- SPEC §12 routes (``model.py``): follows, reads of groups, reactions, users, collections


class GsEnrichQuery(GsReadQuery):
    """A feed read: the page bounds, the reaction enrichment, discarded actors and, on a
    notification feed, marks."""

    withOwnReactions: bool | None = Field(None, description="Add own_reactions (also with_own_reactions)")
    withRecentReactions: bool | None = Field(None, description="Add latest_reactions (also with_recent_reactions)")
    withReactionCounts: bool | None = Field(None, description="Add reaction_counts (also with_reaction_counts)")
    reactionKindsFilter: str | None = Field(None, description="Only these kinds, comma-separated")
    recentReactionsLimit: int | None = Field(None, ge=1, description="Reactions per kind (default 10, at most 100)")
    discard_actors: str | None = Field(None, description="Leave out these actors' activities")
    discard_actors_sep: str | None = Field(None, description="Separator of discard_actors (default ,)")
    mark_seen: str | None = Field(None, description="Notification feeds: true, or group ids, marked seen")
    mark_read: str | None = Field(None, description="Notification feeds: true, or group ids, marked read")


class GsGroup(_Open):
    """A group of an aggregated or notification feed."""

    id: str
    group: str
    verb: str | None = None
    activities: list[GsActivity]
    activity_count: int = Field(ge=0)
    actor_count: int = Field(ge=0)
    created_at: str
    updated_at: str
    is_seen: bool | None = Field(None, description="Notification feeds only")
    is_read: bool | None = Field(None, description="Notification feeds only")


class GsGroups(GsDone):
    """Groups newest first (notification feeds: with unseen/unread)."""

    results: list[GsGroup]
    next: str | None = None
    unseen: int | None = Field(None, ge=0)
    unread: int | None = Field(None, ge=0)


class GsFollowPath(GsFeedPath):
    """A follow relation of a feed."""

    target: str = Field(description="The followed feed (slug:user_id)")


class GsFollowIn(BaseModel):
    """Follow ``target``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"target": "user:bob", "activity_copy_limit": 10}]})

    target: str = Field(description="slug:user_id")
    activity_copy_limit: int | None = Field(None, ge=0, le=1000, description="Newest activities copied now")


class GsUnfollowQuery(GsAuthQuery):
    """Keep the copies already made."""

    keep_history: bool | None = None


class GsFollowListQuery(GsAuthQuery):
    """A page of follow relations."""

    limit: int | None = Field(None, description="Page size (default 25, at most 500)")
    offset: int | None = None
    filter: str | None = Field(None, description="Only these feeds, comma-separated")


class GsFollow(BaseModel):
    """A follow relation."""

    feed_id: str
    target_id: str
    created_at: str
    updated_at: str


class GsFollows(GsDone):
    """Follow relations, newest first."""

    results: list[GsFollow]


class GsFollowPair(BaseModel):
    """``source`` follows ``target``."""

    source: str
    target: str


class GsUnfollowPair(GsFollowPair):
    """``source`` stops following ``target``."""

    keep_history: bool | None = None


class GsFollowManyQuery(GsAuthQuery):
    """Copies per new follow."""

    activity_copy_limit: int | None = Field(None, ge=0, le=1000)


class GsStatsQuery(GsAuthQuery):
    """Counts of one feed's followers and/or followed feeds."""

    followers: str | None = Field(None, description="Count this feed's followers")
    following: str | None = Field(None, description="Count the feeds this feed follows")
    followers_slugs: str | None = Field(None, description="Only followers of these groups")
    following_slugs: str | None = Field(None, description="Only followed feeds of these groups")


class GsCount(BaseModel):
    """A count."""

    feed: str
    count: int = Field(ge=0)


class GsCounts(BaseModel):
    """The counts asked for."""

    followers: GsCount | None = None
    following: GsCount | None = None


class GsStats(GsDone):
    """Follow counts."""

    results: GsCounts


class GsReactionIn(BaseModel):
    """A reaction to an activity (``activity_id``) or to a reaction (``parent``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"kind": "like", "activity_id": "01KAZ8Y0A1B2C3D4E5F6G7H8J9", "user_id": "bob"}]
        }
    )

    kind: str
    activity_id: str | None = None
    parent: str | None = None
    user_id: str | None = None
    data: dict[str, Any] | None = None
    target_feeds: list[str] | None = None
    id: str | None = None


class GsReactionUpdate(BaseModel):
    """New data (and target feeds) of a reaction."""

    data: dict[str, Any] | None = None
    target_feeds: list[str] | None = None


class GsReaction(_Open):
    """A reaction in GetStream's shape."""

    id: str
    kind: str
    activity_id: str
    user_id: str
    data: dict[str, Any]
    parent: str
    created_at: str
    updated_at: str
    latest_children: dict[str, Any]
    children_counts: dict[str, Any]


class GsReactionAnswer(GsReaction):
    """The reaction (with ``duration``)."""

    duration: str


class GsIdPath(BaseModel):
    """One reaction or user."""

    id: str


class GsReactionFilterPath(BaseModel):
    """Reactions of an activity, of a reaction or of a user."""

    by: Literal["activity_id", "reaction_id", "user_id"]
    value: str


class GsReactionKindPath(GsReactionFilterPath):
    """… of one kind."""

    kind: str


class GsReactionFilterQuery(GsAuthQuery):
    """A page of reactions."""

    limit: int | None = Field(None, description="Default 10, at most 100")
    id_lt: str | None = None
    id_gt: str | None = None
    with_activity_data: bool | None = Field(None, description="By activity_id: add the activity")


class GsReactions(GsDone):
    """Reactions, newest first."""

    results: list[GsReaction]
    next: str
    activity: GsActivity | None = None


class GsUserIn(BaseModel):
    """A user."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "bob", "data": {"name": "Bob"}}]})

    id: str
    data: dict[str, Any] | None = None


class GsUserQuery(GsAuthQuery):
    """``get_or_create``: answer the existing user."""

    get_or_create: bool | None = None


class GsDataIn(BaseModel):
    """New data."""

    data: dict[str, Any] | None = None


class GsUser(GsDone):
    """A user."""

    id: str
    data: dict[str, Any]
    created_at: str
    updated_at: str


class GsCollectionPath(BaseModel):
    """A collection."""

    collection: str


class GsObjectPath(GsCollectionPath):
    """One object of a collection."""

    id: str


class GsObjectIn(BaseModel):
    """A collection object."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "pizza", "data": {"name": "Pizza"}}]})

    id: str | None = None
    data: dict[str, Any] | None = None
    user_id: str | None = None


class GsObjectDoc(BaseModel):
    """A stored collection object."""

    id: str
    collection: str
    foreign_id: str
    data: dict[str, Any]
    user_id: str
    created_at: str
    updated_at: str


class GsObject(GsObjectDoc, GsDone):
    """A collection object (with ``duration``)."""


class GsUpsertIn(BaseModel):
    """Objects by collection; each item's fields other than ``id``/``user_id`` are its data."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": {"food": [{"id": "pizza", "name": "Pizza"}]}}]})

    data: dict[str, list[dict[str, Any]]]


class GsUpserted(GsDone):
    """The stored objects by collection."""

    data: dict[str, list[GsObjectDoc]]


class GsSelectQuery(GsAuthQuery):
    """Objects by ``collection:id``, comma-separated."""

    foreign_ids: str | None = None


class GsSelectedData(BaseModel):
    """The objects found."""

    data: list[GsObjectDoc]


class GsSelected(GsDone):
    """The objects found (GetStream's envelope)."""

    response: GsSelectedData


class GsDeleteObjectsQuery(GsAuthQuery):
    """Objects of one collection, by id."""

    collection_name: str | None = None
    ids: str | None = Field(None, description="Comma-separated object ids (unknown ones are fine)")


# -- Bayeux (/faye): the realtime endpoint of the JS client's feed.subscribe


class BayeuxExt(_Open):
    """The subscription's credentials: the app key and the feed's token (or a user token)."""

    api_key: str | None = None
    signature: str | None = Field(None, description="A JWT whose feed_id covers the channel's feed")


class BayeuxAdvice(BaseModel):
    """Reconnect advice."""

    reconnect: Literal["retry", "handshake", "none"]
    interval: int = Field(ge=0)
    timeout: int | None = Field(None, ge=0, description="Milliseconds a /meta/connect is held")


class BayeuxMessage(_Open):
    """One Bayeux message the client sends."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"],
                    "id": "1",
                }
            ]
        },
    )

    channel: str = Field(description="`/meta/handshake`, `/meta/connect`, `/meta/subscribe`, `/meta/unsubscribe`, …")
    id: str | None = None
    clientId: str | None = Field(None, description="From the handshake")
    version: str | None = None
    supportedConnectionTypes: list[str] | None = None
    connectionType: str | None = None
    subscription: str | list[str] | None = Field(None, description="`/site-<app_id>-feed-<slug><user_id>`")
    ext: BayeuxExt | None = None


class GsRealtime(BaseModel):
    """GetStream's realtime message for one change of a feed."""

    deleted: list[str]
    deleted_foreign_ids: list[list[str]]
    new: list[GsActivity]
    feed: str
    app_id: str
    published_at: str


class BayeuxReply(BaseModel):
    """One Bayeux answer: a meta reply (``successful``, ``error`` as ``<code>::<text>``) or a
    delivered message (``data``)."""

    channel: str | None
    id: str | None = None
    clientId: str | None = None
    successful: bool | None = None
    error: str | None = Field(None, description="e.g. `401:clientId:Unknown client`, `403::Forbidden`")
    advice: BayeuxAdvice | None = None
    version: str | None = None
    supportedConnectionTypes: list[str] | None = None
    subscription: str | list[str] | None = None
    data: GsRealtime | None = None


class BayeuxForm(BaseModel):
    """Cross-origin long-polling: the messages as a form field."""

    message: str = Field(description="The JSON message or message array")


class BayeuxJsonpQuery(BaseModel):
    """Callback polling (JSONP)."""

    message: str = Field(description="The JSON message or message array")
    jsonp: str | None = Field(None, description="The callback name (default jsonpcallback)")


__all__ = [
    "BayeuxAdvice",
    "BayeuxExt",
    "BayeuxForm",
    "BayeuxJsonpQuery",
    "BayeuxMessage",
    "BayeuxReply",
    "GsActivitiesIn",
    "GsActivitiesQuery",
    "GsActivity",
    "GsActivityIn",
    "GsAddToMany",
    "GsAdded",
    "GsAddedMany",
    "GsAuthQuery",
    "GsChange",
    "GsChanges",
    "GsCollectionPath",
    "GsCount",
    "GsCounts",
    "GsDataIn",
    "GsDeleteObjectsQuery",
    "GsDone",
    "GsEnrichQuery",
    "GsError",
    "GsFeedPath",
    "GsFollow",
    "GsFollowIn",
    "GsFollowListQuery",
    "GsFollowManyQuery",
    "GsFollowPair",
    "GsFollowPath",
    "GsFollows",
    "GsGroup",
    "GsGroups",
    "GsIdPath",
    "GsObject",
    "GsObjectDoc",
    "GsObjectIn",
    "GsObjectPath",
    "GsReaction",
    "GsReactionAnswer",
    "GsReactionFilterPath",
    "GsReactionFilterQuery",
    "GsReactionIn",
    "GsReactionKindPath",
    "GsReactionUpdate",
    "GsReactions",
    "GsReadQuery",
    "GsRealtime",
    "GsRemovePath",
    "GsRemoveQuery",
    "GsRemoved",
    "GsResults",
    "GsRetargeted",
    "GsSelectQuery",
    "GsSelected",
    "GsSelectedData",
    "GsStats",
    "GsStatsQuery",
    "GsTargets",
    "GsUnfollowPair",
    "GsUnfollowQuery",
    "GsUpsertIn",
    "GsUpserted",
    "GsUser",
    "GsUserIn",
    "GsUserQuery",
]
