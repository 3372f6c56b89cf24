"""Feed groups, aggregated and notification feeds (SPEC §12).

A feed's group is the part of its name before the first ``:`` (``user:42`` → ``user``); its type
comes from ``[feed_groups.<slug>]`` (unknown groups are flat). Activities are stored the same way
in every type; an aggregated or notification feed is also kept as *groups*: activities whose
``aggregation_format`` renders to the same text form one group (GetStream's rule). The groups
are materialized in Redis (``lua/aggregate.lua``, keys in the feed's slot) by folding the feed's
change log in seq order: each read first files the changes made since the last fold (creates
join a group, updates move an activity whose key changed, deletes leave; trimmed activities
leave too), so a group keeps its id, its members and its counts however many activities arrive
after it. When the log no longer reaches back to the last fold (more than ``resume_window``
changes since, or a new feed history), the groups are rebuilt from the feed's activities.

A group's id is derived from the feed and its key (stable across reads, and known to the live
events before any read). Groups are ordered by ``updated_at`` (their newest activity's time),
so a group that gains a newer activity moves to the top; a page cursor (``id_lt``) is a group id.
A group returns its newest ``max_group_activities`` activities (15 by default, as GetStream)
and counts all of them (``activity_count``, ``actor_count``); ``created_at``/``updated_at`` are
the times of its oldest and newest activity.

``aggregation_format`` is GetStream's template syntax, rendered by a small safe renderer (no
eval, no attribute access beyond ``time.strftime``): ``{{ verb }}``, ``{{ actor }}``,
``{{ object }}``, ``{{ target }}``, ``{{ feed }}``, ``{{ id }}``, ``{{ time }}`` and
``{{ time.strftime("%Y-%m-%d") }}``; anything else renders as an empty string.

A notification feed's groups carry ``is_seen``/``is_read``, and a read returns
``unseen``/``unread``: the number of groups not seen/read since they last gained an activity
(a group marked seen is unseen again once a new activity joins it, as in GetStream). Marking a
group also marks its activities with the feed's activity marks (those of ``lua/marks.lua``), in
the same script.

A notification feed's counts are pushed live on its channel: ``{"counts": {activity unseen,
unread}, "groups": {group unseen, unread}}`` (the ``notifications`` frame with ``groups``), by
every group mark and by every fold that files a change. ``LiveGroupCounts`` folds a notification
feed soon after each write to it (``FeedStore.on_change``, coalesced per feed, in the background),
when someone is subscribed to it, so its subscribers learn that a new activity opened or re-opened
a group (or that a delete emptied one) without reading.

A reader who may not see every activity of the feed (not a feed admin, nor the owner of a
notification feed), or who discards actors, gets the same groups in the same order, each
restricted to the activities it may see among the group's newest ``SCAN`` (its counts cover
those); groups with none are left out, and such a page stops after examining ``SCAN``
activities (``next`` then continues from there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .acl import Principal, Right, actor_id, notification_feed
from .backends.base import Pipeline
from .calls import Calls, text
from .errors import Forbidden, Invalid
from .keys import Keys
from .models import parse_time
from .service import FeedService
from .store import FeedStore, load_script

#: ``{{ name }}`` or ``{{ time.strftime("…") }}``.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)(?:\s*\.\s*strftime\(\s*(['\"])(.*?)\2\s*\))?\s*\}\}")
DEFAULT_FORMAT = '{{ verb }}_{{ time.strftime("%Y-%m-%d") }}'
#: Activities of each group a restricted reader's read examines (its newest), and of one page.
SCAN = 1000
#: Activities a group returns by default (GetStream's number); ``max_group_activities``.
GROUP_ACTIVITIES = 15
#: Folds attempted by one read before giving up on racing readers (each retry reads the log anew).
_FOLD_ATTEMPTS = 8

log = logging.getLogger("feedserver.aggregation")


@dataclass(frozen=True, slots=True)
class FeedGroup:
    """How feeds of one group behave."""

    type: str = "flat"
    aggregation_format: str = DEFAULT_FORMAT
    max_length: int = 0
    max_group_activities: int = GROUP_ACTIVITIES


class FeedGroups:
    """Feed group lookup from ``[feed_groups.<slug>]``."""

    def __init__(self, groups: Mapping[str, Any]) -> None:
        self._groups = {
            slug: FeedGroup(
                g.type,
                g.aggregation_format or DEFAULT_FORMAT,
                g.max_length,
                getattr(g, "max_group_activities", GROUP_ACTIVITIES),
            )
            for slug, g in groups.items()
        }

    def of(self, feed: str) -> FeedGroup:
        """The group of ``feed`` (flat when not configured)."""
        return self._groups.get(feed.split(":", 1)[0], FeedGroup())

    def decorate(self, feed: str, event: dict[str, Any]) -> dict[str, Any]:
        """``Hub.decorate``: a created/updated activity of an aggregated or notification feed is
        sent live (and replayed) with ``aggregation_group: {id, group}``, the group it joins, so a
        client can update its list of groups without reading it again. Returns a copy (or the
        event itself when nothing is added)."""
        group = self.of(feed)
        activity = event.get("activity")
        if group.type == "flat" or event.get("event") not in ("created", "updated") or not isinstance(activity, dict):
            return event
        key = render(group.aggregation_format, activity)
        joined = {**activity, "aggregation_group": {"id": group_id(feed, key), "group": key}}
        return {**event, "activity": joined}


def _ref(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id", ""))
    return "" if value is None else str(value)


def render(template: str, activity: Mapping[str, Any]) -> str:
    """Render an ``aggregation_format`` for one activity (safe: only the documented variables)."""

    def one(match: re.Match[str]) -> str:
        name, fmt = match.group(1), match.group(3)
        if name == "time":
            try:
                when: datetime = parse_time(activity.get("time"))
            except (TypeError, ValueError):
                return ""
            if fmt is None:
                return when.isoformat()
            try:
                return when.strftime(fmt)
            except ValueError:
                return ""
        if name == "actor":
            return actor_id(activity) or ""
        if name in ("verb", "feed", "id"):
            return str(activity.get(name) or "")
        if name in ("object", "target"):
            return _ref(activity.get(name))
        return ""

    return _PLACEHOLDER.sub(one, template)


def group_id(feed: str, key: str) -> str:
    """A stable id for the group ``key`` of ``feed``."""
    return hashlib.sha1(f"{feed}\x00{key}".encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class StoredGroup:
    """One group as read from Redis: its record, notification flags and newest member bodies."""

    id: str
    record: dict[str, Any]
    unseen: bool
    unread: bool
    bodies: list[bytes]


@dataclass(frozen=True, slots=True)
class StoredPage:
    """Groups newest first, whether more follow, and the feed's unseen/unread group counts."""

    groups: list[StoredGroup]
    more: bool
    unseen: int
    unread: int


class AggregationStore:
    """The materialized groups of aggregated and notification feeds (``lua/aggregate.lua``)."""

    def __init__(self, pipeline: Pipeline, keys: Keys, feeds: FeedStore, *, timeout: float) -> None:
        self.calls = Calls(pipeline, timeout)
        self.keys = keys
        self.feeds = feeds
        self._script = self.calls.script(load_script("aggregate.lua"))

    def _keys(self, feed: str) -> list[str]:
        return [*self.keys.feed(feed), *self.keys.aggregation(feed), *self.keys.notification_marks(feed)]

    async def _eval(self, feed: str, *args: Any) -> Any:
        return await self.calls.eval(self._script, self._keys(feed), args)

    async def fold(self, feed: str, key_of: Callable[[Mapping[str, Any]], str], *, live: bool = False) -> None:
        """File the feed's changes since the last fold into its groups (``key_of``: an activity's
        group key); rebuild them from the feed when the log no longer reaches that far.

        ``live`` (notification feeds): a fold that files anything publishes the feed's counts."""
        meta = self.keys.aggregation(feed)[0]
        flag = "1" if live else ""
        for _ in range(_FOLD_ATTEMPTS):
            epoch, seq = await self.calls.cmd(meta, "HMGET", meta, "epoch", "seq")
            if epoch is None or seq is None:
                await self.rebuild(feed, key_of, live=live)
                return
            since = (text(epoch), int(seq))
            cursor = await self.feeds.cursor(feed, since)
            if not cursor.recovered:
                await self.rebuild(feed, key_of, live=live)
                return
            if cursor.seq == since[1]:
                return
            ops: list[list[str]] = []
            for raw in cursor.events:
                event = orjson.loads(raw)
                activity = event.get("activity")
                if not isinstance(activity, dict) or not isinstance(activity.get("id"), str):
                    continue
                if event.get("event") in ("created", "updated"):
                    ops.append(_add_op(feed, key_of, activity))
                elif event.get("event") == "deleted":
                    ops.append(["del", activity["id"]])
            reply = await self._eval(feed, "apply", "", *since, cursor.epoch, cursor.seq, orjson.dumps(ops), flag)
            if text(reply[0]) == "ok":
                return
        # Readers kept folding first: the groups are at most a few changes behind, serve them.

    async def rebuild(self, feed: str, key_of: Callable[[Mapping[str, Any]], str], *, live: bool = False) -> None:
        """File every activity of the feed anew (first read, or the log lost the last fold).

        The feed position is taken first, so changes made while the activities are read are filed
        again by the next fold (filing is idempotent, and a deleted activity is never filed)."""
        cursor = await self.feeds.cursor(feed)
        idx, acts = self.keys.feed(feed).idx, self.keys.feed(feed).acts
        ops: list[list[str]] = []
        start = 0
        while True:
            ids = await self.calls.cmd(idx, "ZRANGE", idx, start, start + 499)
            if not ids:
                break
            bodies = await self.calls.cmd(acts, "HMGET", acts, *ids)
            for body in bodies:
                if body:
                    ops.append(_add_op(feed, key_of, orjson.loads(body)))
            start += len(ids)
        flag = "1" if live else ""
        await self._eval(feed, "apply", "1", "", "", cursor.epoch, cursor.seq, orjson.dumps(ops), flag)

    async def page(self, feed: str, *, id_lt: str, offset: int, limit: int, cap: int, budget: int) -> StoredPage:
        """Groups newest first after ``id_lt`` (a group id), each with its newest ``cap`` members;
        an unknown ``id_lt`` is an empty last page."""
        reply = await self._eval(feed, "page", id_lt, offset, limit, cap, budget)
        if reply and reply[0] == b"unknown":
            return StoredPage([], False, 0, 0)
        groups = [
            StoredGroup(
                text(g[0]),
                orjson.loads(g[1]) if g[1] else {},
                bool(g[2]),
                bool(g[3]),
                [b for b in g[4] if b],
            )
            for g in reply[3:]
        ]
        return StoredPage(groups, reply[2] == b"1", int(reply[0]), int(reply[1]))

    async def mark(self, feed: str, mode: str, gids: Sequence[str], *, all_: bool) -> tuple[int, int]:
        """Mark groups (or all) seen, or read and seen, until they gain an activity again, and
        their activities likewise; publishes the counts. Returns the group (unseen, unread)."""
        reply = await self._eval(feed, "mark", mode, "1" if all_ else "", *gids)
        return int(reply[0]), int(reply[1])

    async def subscribed(self, feed: str) -> bool:
        """Whether anyone subscribes to the feed's channel (sharded pub/sub, on its slot's node)."""
        channel = self.keys.channel(feed)
        reply = await self.calls.cmd(channel, "PUBSUB", "SHARDNUMSUB", channel)
        return bool(reply and int(reply[1]) > 0)


def _add_op(feed: str, key_of: Callable[[Mapping[str, Any]], str], doc: Mapping[str, Any]) -> list[str]:
    key = key_of(doc)
    return [
        "add",
        str(doc["id"]),
        group_id(feed, key),
        key,
        str(doc.get("verb") or ""),
        actor_id(doc) or "",
        str(doc.get("time") or ""),
    ]


def _group_out(gid: str, record: Mapping[str, Any], docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": gid,
        "group": record.get("group", ""),
        "verb": record.get("verb") or (docs[-1].get("verb") if docs else None),
        "activities": list(docs),
        "activity_count": int(record.get("n", len(docs))),
        "actor_count": int(record.get("a", 0)),
        "created_at": record.get("ct"),
        "updated_at": record.get("ut"),
    }


def restricted_group(gid: str, record: Mapping[str, Any], docs: Sequence[dict[str, Any]], cap: int) -> dict[str, Any]:
    """A group as a restricted reader gets it: ``docs`` are the members it may see, newest first;
    counts and times cover those only (nothing about the others leaks)."""
    times = [str(d.get("time") or "") for d in docs]
    return _group_out(
        gid,
        {
            "group": record.get("group", ""),
            "verb": record.get("verb"),
            "n": len(docs),
            "a": len({actor_id(d) for d in docs}),
            "ct": min(times),
            "ut": max(times),
        },
        docs[:cap],
    )


@dataclass(frozen=True, slots=True)
class GroupPage:
    """A page of groups, the next group id (None at the end), and notification counts."""

    groups: list[dict[str, Any]]
    next: str | None
    unseen: int | None = None
    unread: int | None = None


class AggregationService:
    """Reads of aggregated and notification feeds, and their marks."""

    def __init__(self, feeds: FeedService, groups: FeedGroups, store: AggregationStore) -> None:
        self.feeds = feeds
        self.groups = groups
        self.store = store

    async def _fold(self, feed: str) -> FeedGroup:
        group = self.groups.of(feed)
        template = group.aggregation_format
        await self.store.fold(feed, lambda doc: render(template, doc), live=group.type == "notification")
        return group

    async def read(
        self,
        principal: Principal,
        feed: str,
        *,
        limit: int = 25,
        id_lt: str = "",
        offset: int = 0,
        mark_seen: str = "",
        mark_read: str = "",
        discard: frozenset[str] = frozenset(),
    ) -> GroupPage:
        """Groups of ``feed`` newest first; ``id_lt`` (a group id) starts after that group. On a
        notification feed, ``mark_seen``/``mark_read`` (``"true"`` or group ids) mark after reading."""
        self.feeds.require(principal, feed, Right.READ)
        if not 1 <= limit <= self.feeds.max_page:
            raise Invalid(f"limit must be 1..{self.feeds.max_page}", errors=[{"loc": "limit", "msg": "range"}])
        group = await self._fold(feed)
        cap = group.max_group_activities
        viewer = principal.viewer(feed)
        if viewer.admin and not discard:
            stored = await self.store.page(feed, id_lt=id_lt, offset=offset, limit=limit, cap=cap, budget=limit * cap)
            page = [_group_out(g.id, g.record, [orjson.loads(b) for b in g.bodies]) for g in stored.groups]
            flags = {g.id: (not g.unseen, not g.unread) for g in stored.groups}
            nxt = page[-1]["id"] if stored.more and page else None
        else:
            page, flags, nxt, stored = await self._restricted(principal, feed, id_lt, offset, limit, cap, discard)
        if group.type != "notification":
            return GroupPage(page, nxt)
        for g in page:
            g["is_seen"], g["is_read"] = flags[g["id"]]
        for mode, which in (("seen", mark_seen), ("read", mark_read)):
            if which:
                await self._mark(principal, feed, mode, which)
        return GroupPage(page, nxt, stored.unseen, stored.unread)

    async def _restricted(
        self,
        principal: Principal,
        feed: str,
        id_lt: str,
        offset: int,
        limit: int,
        cap: int,
        discard: frozenset[str],
    ) -> tuple[list[dict[str, Any]], dict[str, tuple[bool, bool]], str | None, StoredPage]:
        """A page for a reader who may not see everything (or discards actors): each group
        restricted to what it may see among its newest ``SCAN``; at most ``SCAN`` examined."""
        viewer = principal.viewer(feed)
        page: list[dict[str, Any]] = []
        flags: dict[str, tuple[bool, bool]] = {}
        examined, cursor, skip = 0, id_lt, offset
        stored = StoredPage([], False, 0, 0)
        while len(page) < limit and examined < SCAN:
            want = limit - len(page)
            stored = await self.store.page(
                feed, id_lt=cursor, offset=skip, limit=want, cap=SCAN, budget=SCAN - examined
            )
            skip = 0
            for g in stored.groups:
                cursor = g.id
                examined += len(g.bodies)
                docs = [d for d in map(orjson.loads, g.bodies) if viewer.can_see(d) and actor_id(d) not in discard]
                if docs:
                    page.append(restricted_group(g.id, g.record, docs, cap))
                    flags[g.id] = (not g.unseen, not g.unread)
            if not stored.more:
                return page, flags, None, stored
        return page, flags, cursor or None, stored

    def _may_mark(self, principal: Principal, feed: str) -> None:
        owner = principal.sub is not None and feed == notification_feed(principal.sub)
        if not owner and not principal.rights(feed) & (Right.WRITE | Right.ADMIN):
            raise Forbidden(f"no right to mark {feed}")

    async def _mark(self, principal: Principal, feed: str, mode: str, which: str) -> tuple[int, int]:
        """Mark groups (``which``: "true"/"all" or group ids) and their activities seen or read;
        the new group (unseen, unread), also pushed live."""
        self._may_mark(principal, feed)
        if which.lower() in ("true", "1", "all"):
            return await self.store.mark(feed, mode, (), all_=True)
        gids = list(dict.fromkeys(w for w in which.split(",") if w))[: self.feeds.max_page]
        return await self.store.mark(feed, mode, gids, all_=False)

    async def mark(self, principal: Principal, feed: str, mode: str, raw: Any) -> tuple[int, int]:
        """Mark ``{"ids": [group ids]}`` or ``{"all": true}`` seen or read; the new group counts."""
        self.feeds.require(principal, feed, Right.READ)
        if not isinstance(raw, dict) or not (raw.get("all") is True or isinstance(raw.get("ids"), list)):
            raise Invalid('give {"ids": [group ids]} or {"all": true}', errors=[{"loc": "ids", "msg": "ids or all"}])
        if self.groups.of(feed).type != "notification":
            raise Invalid(
                f"{feed} is not a notification feed", errors=[{"loc": "feed", "msg": "not a notification feed"}]
            )
        which = "true" if raw.get("all") is True else ",".join(str(i) for i in raw["ids"])
        await self._fold(feed)
        return await self._mark(principal, feed, mode, which)

    async def refresh(self, feed: str) -> bool:
        """Fold a notification feed now if anyone subscribes to it (the fold pushes its counts
        when it files a change); whether it was folded."""
        if not await self.store.subscribed(feed):
            return False
        await self._fold(feed)
        return True


class LiveGroupCounts:
    """Pushes a notification feed's group counts after writes to it (SPEC §12: "counts and group
    changes are pushed live").

    ``changed(feed)`` (a ``FeedStore.on_change`` callback) only notes the feed, and only if its
    group type is notification: the writer is never held up. A background task folds the noted
    feeds (``AggregationService.refresh``; at most ``concurrency`` at a time, each feed once
    however many writes it got meanwhile; a feed written to during its fold is folded again).
    At most ``max_pending`` feeds wait; beyond that, and on Redis trouble, a feed is left to its
    next read or write, which folds it (and pushes the counts) anyway.
    """

    def __init__(self, service: AggregationService, *, concurrency: int = 16, max_pending: int = 10_000) -> None:
        self.service = service
        self.concurrency = concurrency
        self.max_pending = max_pending
        self._pending: dict[str, None] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped = 0  # feeds not noted because too many were waiting
        self.failed = 0  # folds that failed (Redis trouble)

    def changed(self, feed: str, *_: object) -> None:
        """A change was written to ``feed``: fold it soon, if it is a notification feed."""
        if self._closed or feed in self._pending or self.service.groups.of(feed).type != "notification":
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending[feed] = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                feeds = list(self._pending)[: self.concurrency]
                for feed in feeds:
                    del self._pending[feed]
                done = await asyncio.gather(*map(self.service.refresh, feeds), return_exceptions=True)
                failures = [r for r in done if isinstance(r, BaseException)]
                if failures:
                    self.failed += len(failures)
                    log.warning(
                        "could not push group counts of %d notification feeds (their next read does): %s",
                        len(failures),
                        failures[0],
                    )
        finally:
            self._task = None

    async def close(self) -> None:
        """Stop folding (shutdown); what waits is left to the next reads."""
        self._closed = True
        task, self._task = self._task, None
        self._pending.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
