"""The copies-and-notifications seam of the feed service (docs/api.md "Copies").

An activity with ``to`` feeds, or with ``notify`` identities in its audience, has copies in other
feeds: the ``to`` feeds and the identities' notification feeds. This part checks that a writer may
place them, keeps them in line with their original after every write (``sync_copies``), sends an
edit addressed to a copy to its original (``change_copy``), and serves the caller's notification
feed with its seen/read marks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .acl import Principal, Right, Rights, actor_id, notification_feed
from .backends.base import Store, WriteItem
from .errors import Invalid, Unauthorized
from .models import (
    ActivityIn,
    PatchIn,
    check_feed_name,
    dumps,
    format_time,
    now,
    parse_time,
    time_ms,
    visibility,
)
from .reads import PageQuery, Reads
from .rights import require

if TYPE_CHECKING:
    from .writes import Input

    #: Applies a change to an original activity (origin feed, the caller's rights there, its id),
    #: without following copies again; returns the original's stored body (``Writes._change``).
    ChangeOriginal = Callable[[Principal, str, Rights, str, Input | PatchIn], Awaitable[bytes]]

#: The feed service's logger: copies are part of it (docs/api.md names it for failed copies).
log = logging.getLogger("feedserver.service")

_NOT_COPIED = frozenset({"id", "seq", "feed", "created_at", "updated_at", "version", "to", "origin"})
_MAX_MARK_IDS = 1000


@dataclass(frozen=True, slots=True)
class NotificationPage:
    """A page of the caller's notification feed and its unseen/unread counts."""

    bodies: list[bytes]
    next: dict[str, Any] | None
    unseen: int
    unread: int


class Copies:
    """`to` copies and notification copies of activities, and the caller's notification feed."""

    def __init__(self, store: Store, reads: Reads) -> None:
        self.store = store
        self.reads = reads

    # -- copies: `to` feeds and notification feeds ----------------------------------------------

    @staticmethod
    def check_copy_targets(principal: Principal, feed: str, item: ActivityIn) -> None:
        """Writing copies into `to` feeds needs `write` there; notified identities need a valid feed name."""
        for target in item.to or ():
            if target != feed:
                require(principal, target, Right.WRITE)
        for i, entry in enumerate(item.audience or ()):
            if entry.notify and entry.type == "identity" and entry.id is not None:
                try:
                    check_feed_name(notification_feed(entry.id))
                except Invalid:
                    raise Invalid(
                        f"identity {entry.id!r} cannot have a notification feed (feed name rules)",
                        errors=[{"loc": f"audience.{i}.id", "msg": "not usable in a feed name", "type": "value_error"}],
                    ) from None

    async def sync_copies(
        self, feed: str, changes: Iterable[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]]
    ) -> None:
        """Bring the copies of changed activities in line: write them where the new version wants
        one, delete them where only the old version had one. ``changes`` are (old, new) pairs, either
        side None for a creation or a deletion.

        Copies are separate writes to other feeds (other hash slots), so they follow the original
        rather than being atomic with it; a copy that cannot be written is logged.
        """
        writes: dict[str, list[WriteItem]] = {}
        deletes: dict[str, list[str]] = {}
        stamp = format_time(now())
        for old, new in changes:
            before = copy_targets(feed, old) if old is not None else set()
            after = copy_targets(feed, new) if new is not None else set()
            for target in after:
                assert new is not None
                writes.setdefault(target, []).append(_copy_item(feed, target, new, stamp))
            for target in before - after:
                assert old is not None
                deletes.setdefault(target, []).append(old["id"])
        jobs: list[Awaitable[object]] = [self.store.write(target, items) for target, items in writes.items()]
        jobs += [self.store.delete(target, ids, actor="", may_override=True) for target, ids in deletes.items()]
        if not jobs:
            return
        targets = [*writes, *deletes]
        for target, outcome in zip(targets, await asyncio.gather(*jobs, return_exceptions=True), strict=True):
            if isinstance(outcome, BaseException):
                log.error("copy of an activity of %s into %s failed: %s", feed, target, outcome)

    async def change_copy(
        self,
        principal: Principal,
        feed: str,
        copy: Mapping[str, Any],
        change: Input | PatchIn,
        change_original: ChangeOriginal,
    ) -> bytes:
        """Edit a `to`/notification copy: the edit goes to its original, and the copy follows.

        A copy has no life of its own (docs/api.md "Copies"): its content is the original's, so
        the caller needs the rights to change the original in its own feed (``write``, and being
        its author or that feed's admin). As in GetStream, such an update does not change ``to``:
        a PUT keeps the original's targets and PATCH paths under ``to`` are ignored. Returns the
        copy as it now is in ``feed`` (the original, if the edit took the copy away).
        """
        origin, activity_id = copy["origin"], copy["id"]
        rights = require(principal, origin, Right.WRITE)
        if isinstance(change, PatchIn):
            keep = {k: v for k, v in change.set.items() if k.split(".")[0] != "to"}
            drop = [p for p in change.unset if p.split(".")[0] != "to"]
            if not keep and not drop:
                raw = await self.store.get(feed, activity_id)
                assert raw is not None
                return raw
            change = PatchIn.model_construct(set=keep, unset=drop, version=None)
        else:
            item, source = change
            [raw] = await self.store.find(origin, [(activity_id, "", "")])
            targets = orjson.loads(raw).get("to") if raw is not None else None
            source = {k: v for k, v in source.items() if k != "to"} if isinstance(source, dict) else source
            change = (item.model_copy(update={"to": targets}), source)
        body = await change_original(principal, origin, rights, activity_id, change)
        return await self.store.get(feed, activity_id) or body

    # -- notifications -------------------------------------------------------------------------

    @staticmethod
    def _notification_feed(principal: Principal) -> str:
        if principal.sub is None:
            raise Unauthorized("notifications need an authenticated caller")
        feed = notification_feed(principal.sub)
        check_feed_name(feed)
        return feed

    async def notifications(self, principal: Principal, query: PageQuery) -> NotificationPage:
        """The caller's notification feed, each activity marked ``is_seen``/``is_read``, with counts."""
        feed = self._notification_feed(principal)
        page = await self.reads.read(principal, feed, query)
        docs = [orjson.loads(raw) for raw in page.bodies]
        unseen, unread, seen, read = await self.store.marks(feed, "counts", [d["id"] for d in docs])
        for doc, is_seen, is_read in zip(docs, seen, read, strict=True):
            doc["is_seen"], doc["is_read"] = is_seen, is_read
        return NotificationPage([dumps(d) for d in docs], page.next, unseen, unread)

    async def mark_notifications(self, principal: Principal, kind: str, raw: Any) -> tuple[int, int]:
        """Mark ``{"ids": [...]}`` or ``{"all": true}`` seen or read (read implies seen); new counts."""
        feed = self._notification_feed(principal)
        ids, everything = _mark_request(raw)
        unseen, unread, _, _ = await self.store.marks(feed, kind, ids, all_=everything)
        return unseen, unread


def copy_targets(feed: str, doc: Mapping[str, Any]) -> set[str]:
    """The feeds holding a copy of ``doc``: its `to` feeds and the notification feed of each
    identity audience entry with ``notify``. Copies themselves (with an ``origin``) have none."""
    if doc.get("origin"):
        return set()
    targets = set(doc.get("to") or ())
    for entry in doc.get("audience") or ():
        if entry.get("type") == "identity" and entry.get("notify") and entry.get("id"):
            targets.add(notification_feed(entry["id"]))
    targets.discard(feed)
    return targets


def _copy_item(source: str, target: str, doc: Mapping[str, Any], stamp: str) -> WriteItem:
    """The copy of ``doc`` for ``target``: same id, content and audience; ``origin`` names the source."""
    body = {"feed": target, "origin": source}
    body.update((k, v) for k, v in doc.items() if k not in _NOT_COPIED)
    body["updated_at"] = stamp
    return WriteItem(
        id=doc["id"],
        client_id=True,
        foreign_id=doc.get("foreign_id"),
        time=doc["time"],
        score=time_ms(parse_time(doc["time"])),
        actor=actor_id(doc) or "",
        may_override=True,
        created_at=stamp,
        rest=dumps(body),
        vis=visibility(actor_id(doc) or "", doc["verb"], doc.get("audience") or ()),
    )


def _mark_request(raw: Any) -> tuple[list[str], bool]:
    """``{"ids": [...]}`` or ``{"all": true}``."""
    if isinstance(raw, dict) and raw.get("all") is True and "ids" not in raw:
        return [], True
    ids = raw.get("ids") if isinstance(raw, dict) else None
    if (
        not isinstance(ids, list)
        or not ids
        or len(ids) > _MAX_MARK_IDS
        or not all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids)
    ):
        raise Invalid(
            'give {"ids": [activity ids]} (at most 1000) or {"all": true}',
            errors=[{"loc": "ids", "msg": "a non-empty list of ids, or all: true", "type": "value_error"}],
        )
    return ids, False
