"""Pydantic models of the frames the server sends on ``/v1/ws`` (the client's are in ``protocol.py``).

``protocol.py`` builds these frames by hand as bytes (stored activities are spliced in, never
re-encoded): the hot path stays as fast as it was. These models are the contract of those
bytes: ``/asyncapi.json`` is generated from them, and ``tests/test_asyncapi.py`` validates every
frame a real server sends against them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .api_models import Activity, FieldProblem
from .models import FeedName

Ref = Annotated[str, Field(max_length=256)] | int | None


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: Ref = Field(None, description="The `ref` of the client message this answers (when it had one)")


class Welcome(_Reply):
    """Reply to `auth`: who the connection now acts as."""

    type: Literal["welcome"]
    sub: str | None = Field(description="The token's subject (null: anonymous)")


class Subscribed(_Reply):
    """Reply to `subscribe`: the feed's current cursor. Missed events (with `since`) and live ones follow."""

    type: Literal["subscribed"]
    feed: FeedName
    seq: int = Field(ge=0)
    epoch: str
    recovered: bool = Field(description="True when every change since `since` is replayed after this")


class Unsubscribed(_Reply):
    """Reply to `unsubscribe`."""

    type: Literal["unsubscribed"]
    feed: FeedName


class Pong(_Reply):
    """Reply to `ping`."""

    type: Literal["pong"]


class Ack(_Reply):
    """Reply to a write: the stored activities (none after a delete, which reports `removed`)."""

    model_config = ConfigDict(extra="forbid", title="Ack")

    type: Literal["ack"]
    activities: list[Activity]
    removed: int | None = Field(None, ge=0, description="delete only: how many activities were removed")


class Error(_Reply):
    """A refused message; the connection stays open (unless a close follows, e.g. 4001, 4029)."""

    type: Literal["error"]
    code: str = Field(description="`bad_request`, `unauthorized`, `forbidden`, `not_found`, `invalid`, …")
    detail: str
    errors: list[FieldProblem] | None = None
    retry_after: float | None = Field(None, description="Seconds, when the cause is transient")
    version: int | None = Field(None, description="precondition_failed only: the current version")


class DeletedStub(BaseModel):
    """What a `deleted` event says about the activity."""

    model_config = ConfigDict(extra="forbid")

    id: str
    foreign_id: str | None = None
    time: str | None = None


class ActivityEvent(BaseModel):
    """A change of a subscribed feed that the subscriber may see."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["activity"]
    feed: FeedName
    seq: int = Field(ge=1, description="The change's position: resume from it with `since`")
    event: Literal["created", "updated", "deleted"]
    activity: Activity | DeletedStub


class Reset(BaseModel):
    """Changes were lost: reload the history, then go on from `(epoch, seq)`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["reset"]
    feed: FeedName
    epoch: str
    seq: int = Field(ge=0)


class GroupCounts(BaseModel):
    """Groups of a notification feed not seen / not read since they last gained an activity."""

    model_config = ConfigDict(extra="forbid")

    unseen: int = Field(ge=0)
    unread: int = Field(ge=0)


class NotificationCounts(BaseModel):
    """New unseen/unread counts of a notification feed (after marks, and changes of its groups)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["notifications"]
    feed: FeedName
    unseen: int = Field(ge=0, description="Activities not seen")
    unread: int = Field(ge=0, description="Activities not read")
    groups: GroupCounts | None = Field(
        None,
        description="On a feed whose group type is notification: its group counts, as a group read "
        "returns them (sent after group marks and after a write that changes its groups)",
    )


SERVER_MESSAGES: tuple[type[BaseModel], ...] = (
    Welcome,
    Subscribed,
    Unsubscribed,
    Ack,
    Pong,
    Error,
    ActivityEvent,
    Reset,
    NotificationCounts,
)

#: Any frame the server sends, by its ``type``.
ServerMessage = Annotated[
    Welcome | Subscribed | Unsubscribed | Ack | Pong | Error | ActivityEvent | Reset | NotificationCounts,
    Field(discriminator="type"),
]
