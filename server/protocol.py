"""The WebSocket protocol (SPEC §5) without I/O: client frames → commands, events → frames.

Server frames are built as bytes; stored activity bodies (already JSON) are spliced in as they
are, never decoded and re-encoded, and every event frame is encoded once per process however many
subscribers receive it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from .errors import BadRequest, FeedError, Invalid
from .models import FEED_NAME, dumps, loads, validation_error

Ref = str | int | None
FeedField = Annotated[str, StringConstraints(pattern=f"^{FEED_NAME.pattern}$")]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: Annotated[str, StringConstraints(max_length=256)] | int | None = None


class Since(BaseModel):
    """A resume cursor."""

    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=0)
    epoch: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Auth(_Command):
    """``{"type": "auth", "token": "…"}``."""

    type: Literal["auth"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=16384)]


class Subscribe(_Command):
    """``{"type": "subscribe", "feed": "f", "since": {...}}``."""

    type: Literal["subscribe"]
    feed: FeedField
    since: Since | None = None


class Unsubscribe(_Command):
    """``{"type": "unsubscribe", "feed": "f"}``."""

    type: Literal["unsubscribe"]
    feed: FeedField


class Publish(_Command):
    """``{"type": "publish", "feed": "f", "activity": {...}}`` or ``"activities": [...]``."""

    type: Literal["publish"]
    feed: FeedField
    # Checked as JSON values only: the service validates each activity (no second deep copy here).
    activity: Any = None
    activities: Any = None

    def items(self) -> list[Any]:
        """The activities to write (a single ``activity`` is a batch of one)."""
        if (self.activity is None) == (self.activities is None):
            raise Invalid(
                "publish needs exactly one of 'activity' or 'activities'",
                errors=[{"loc": "activity", "msg": "give 'activity' or 'activities'", "type": "missing"}],
            )
        if self.activity is not None:
            return [self.activity]
        if not isinstance(self.activities, list):
            raise Invalid(
                "activities must be a list",
                errors=[{"loc": "activities", "msg": "must be a list", "type": "list_type"}],
            )
        return list(self.activities)


class Update(_Command):
    """``{"type": "update", "feed": "f", "id": "…", "activity": {...}, "version": 3}``: replace (like PUT)."""

    type: Literal["update"]
    feed: FeedField
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    activity: dict[str, Any]
    version: int | None = Field(None, ge=1)


class Patch(_Command):
    """``{"type": "patch", "feed": "f", "id": "…", "set": {...}, "unset": [...], "version": 3}`` (like PATCH)."""

    type: Literal["patch"]
    feed: FeedField
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    set: dict[str, Any] = Field(default_factory=dict)
    unset: list[Any] = Field(default_factory=list)
    version: int | None = Field(None, ge=1)


class Delete(_Command):
    """``{"type": "delete", "feed": "f", "id": "…"}`` or ``…, "foreign_id": "…"}`` (like DELETE)."""

    type: Literal["delete"]
    feed: FeedField
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    foreign_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    version: int | None = Field(None, ge=1)

    def target(self) -> tuple[str | None, str | None]:
        """(id, foreign_id): exactly one is set."""
        if (self.id is None) == (self.foreign_id is None):
            raise Invalid(
                "delete needs exactly one of 'id' or 'foreign_id'",
                errors=[{"loc": "id", "msg": "give 'id' or 'foreign_id'", "type": "missing"}],
            )
        return self.id, self.foreign_id


class Ping(_Command):
    """``{"type": "ping"}``."""

    type: Literal["ping"]


_COMMANDS: dict[str, type[_Command]] = {
    "auth": Auth,
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
    "publish": Publish,
    "update": Update,
    "patch": Patch,
    "delete": Delete,
    "ping": Ping,
}


def parse_command(data: str | bytes) -> _Command:
    """Decode and validate one client frame.

    Raises ``BadRequest`` for malformed JSON and ``Invalid`` for a bad command; in both cases
    ``exc.extra`` is empty and the caller echoes ``peek_ref`` of the raw message.
    """
    message = loads(data)
    if not isinstance(message, dict):
        raise BadRequest("a message must be a JSON object")
    kind = message.get("type")
    model = _COMMANDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise Invalid(
            f"unknown message type {kind!r}",
            errors=[{"loc": "type", "msg": f"one of {', '.join(sorted(_COMMANDS))}", "type": "literal_error"}],
        )
    try:
        return model.model_validate(message)
    except ValidationError as exc:
        raise validation_error(exc) from None


def peek_ref(data: str | bytes) -> Ref:
    """The ``ref`` of a raw frame, if it has a usable one (for replies to frames that failed)."""
    try:
        message = loads(data)
    except FeedError:
        return None
    ref = message.get("ref") if isinstance(message, dict) else None
    return ref if isinstance(ref, str | int) and not isinstance(ref, bool) else None


# ---------------------------------------------------------------------------------------------
# Server → client frames


def _with_ref(message: dict[str, Any], ref: Ref) -> dict[str, Any]:
    if ref is not None:
        message["ref"] = ref
    return message


def welcome(sub: str | None, ref: Ref = None) -> bytes:
    """Reply to ``auth``."""
    return dumps(_with_ref({"type": "welcome", "sub": sub}, ref))


def subscribed(feed: str, seq: int, epoch: str, recovered: bool, ref: Ref = None) -> bytes:
    """Reply to ``subscribe``: the feed's current cursor."""
    return dumps(
        _with_ref({"type": "subscribed", "feed": feed, "seq": seq, "epoch": epoch, "recovered": recovered}, ref)
    )


def unsubscribed(feed: str, ref: Ref = None, reason: str | None = None) -> bytes:
    """Reply to ``unsubscribe``; with ``reason`` (``"forbidden"``) a subscription the server ended."""
    message: dict[str, Any] = {"type": "unsubscribed", "feed": feed}
    if reason is not None:
        message["reason"] = reason
    return dumps(_with_ref(message, ref))


def pong(ref: Ref = None) -> bytes:
    """Reply to ``ping``."""
    return dumps(_with_ref({"type": "pong"}, ref))


def ack(bodies: Iterable[bytes], ref: Ref = None, **extra: Any) -> bytes:
    """Reply to a write: the stored activities, spliced in as stored."""
    head = {"type": "ack", **extra}
    if ref is not None:
        head["ref"] = ref
    return dumps(head)[:-1] + b',"activities":[' + b",".join(bodies) + b"]}"


def error(exc: FeedError, ref: Ref = None) -> bytes:
    """A per-message error; the connection stays open."""
    return dumps(exc.ws_error(ref))


def reset(feed: str, epoch: str, seq: int) -> bytes:
    """The subscriber missed changes that cannot be replayed: reload history, then go on.

    Live events continue after ``(epoch, seq)``: the cursor to resume from after the reload.
    """
    return dumps({"type": "reset", "feed": feed, "epoch": epoch, "seq": seq})


def activity_frame(feed: str, seq: int, event: str, activity: Any) -> bytes:
    """A change event as subscribers receive it."""
    return dumps({"type": "activity", "feed": feed, "seq": seq, "event": event, "activity": activity})


def notification_counts(feed: str, unseen: int, unread: int, groups: tuple[int, int] | None = None) -> bytes:
    """New unseen/unread activity counts of a notification feed (after seen/read marks); with
    ``groups``, also its unseen/unread group counts (a group-typed feed, after marks or changes)."""
    frame: dict[str, Any] = {"type": "notifications", "feed": feed, "unseen": unseen, "unread": unread}
    if groups is not None:
        frame["groups"] = {"unseen": groups[0], "unread": groups[1]}
    return dumps(frame)


def deleted_stub(activity: dict[str, Any]) -> dict[str, Any]:
    """What a ``deleted`` event says about the activity: its id (and foreign_id / time)."""
    stub = {"id": activity.get("id")}
    for name in ("foreign_id", "time"):
        if name in activity:
            stub[name] = activity[name]
    return stub
