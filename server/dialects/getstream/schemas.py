"""Pydantic models of the GetStream ``/api/v1.0/`` flat-feed routes, for ``/openapi.json`` only.

The handlers (``api.py``) parse GetStream's loose JSON themselves (their errors are GetStream's
``InputException`` shape); these models describe what the official clients send and get, so the
description follows the real answers (``tests/test_openapi.py`` validates them). Activities keep
any custom field (``extra="allow"``).
"""

from __future__ import annotations

from typing import Any

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


__all__ = [
    "GsActivitiesIn",
    "GsActivitiesQuery",
    "GsActivity",
    "GsActivityIn",
    "GsAddToMany",
    "GsAdded",
    "GsAddedMany",
    "GsAuthQuery",
    "GsChanges",
    "GsDone",
    "GsError",
    "GsFeedPath",
    "GsReadQuery",
    "GsRemovePath",
    "GsRemoveQuery",
    "GsRemoved",
    "GsResults",
    "GsRetargeted",
    "GsTargets",
]
