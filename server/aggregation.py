"""Feed groups, aggregated and notification feeds (SPEC §12).

A feed's group is the part of its name before the first ``:`` (``user:42`` → ``user``); its type
comes from ``[feed_groups.<slug>]`` (unknown groups are flat). Activities are stored the same way
in every type; an aggregated or notification feed is *read* as groups: activities whose
``aggregation_format`` renders to the same text form one group, groups newest first.

``aggregation_format`` is GetStream's template syntax, rendered by a small safe renderer (no
eval, no attribute access beyond ``time.strftime``): ``{{ verb }}``, ``{{ actor }}``,
``{{ object }}``, ``{{ target }}``, ``{{ feed }}``, ``{{ id }}``, ``{{ time }}`` and
``{{ time.strftime("%Y-%m-%d") }}``; anything else renders as an empty string.

A notification feed's groups carry ``is_seen``/``is_read`` (every activity of the group marked),
and a read returns ``unseen``/``unread`` (groups with an activity not yet marked); marks are the
notification marks of the feed's activities (``lua/marks.lua``), so the counts are pushed live.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .acl import Principal, Right, actor_id, notification_feed
from .errors import Forbidden, Invalid
from .models import parse_time
from .service import FeedService, PageQuery

#: ``{{ name }}`` or ``{{ time.strftime("…") }}``.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)(?:\s*\.\s*strftime\(\s*(['\"])(.*?)\2\s*\))?\s*\}\}")
DEFAULT_FORMAT = '{{ verb }}_{{ time.strftime("%Y-%m-%d") }}'
#: Activities examined to build one page of groups (newest first).
SCAN = 1000


@dataclass(frozen=True, slots=True)
class FeedGroup:
    """How feeds of one group behave."""

    type: str = "flat"
    aggregation_format: str = DEFAULT_FORMAT
    max_length: int = 0


class FeedGroups:
    """Feed group lookup from ``[feed_groups.<slug>]``."""

    def __init__(self, groups: Mapping[str, Any]) -> None:
        self._groups = {
            slug: FeedGroup(g.type, g.aggregation_format or DEFAULT_FORMAT, g.max_length) for slug, g in groups.items()
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


def aggregate(feed: str, template: str, docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group ``docs`` (newest first) into GetStream's aggregated shape, newest group first."""
    groups: dict[str, dict[str, Any]] = {}
    for doc in docs:
        key = render(template, doc)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "id": group_id(feed, key),
                "group": key,
                "verb": doc.get("verb"),
                "activities": [],
                "activity_count": 0,
                "actor_count": 0,
                "created_at": doc.get("created_at") or doc.get("time"),
                "updated_at": doc.get("updated_at") or doc.get("time"),
                "_actors": set(),
            }
        group["activities"].append(doc)
        group["activity_count"] += 1
        group["_actors"].add(actor_id(doc))
        group["created_at"] = min(group["created_at"], doc.get("created_at") or doc.get("time"))
    out = []
    for group in groups.values():
        group["actor_count"] = len(group.pop("_actors"))
        out.append(group)
    return out


@dataclass(frozen=True, slots=True)
class GroupPage:
    """A page of groups, the next group id (None at the end), and notification counts."""

    groups: list[dict[str, Any]]
    next: str | None
    unseen: int | None = None
    unread: int | None = None


class AggregationService:
    """Reads of aggregated and notification feeds, and their marks."""

    def __init__(self, feeds: FeedService, groups: FeedGroups) -> None:
        self.feeds = feeds
        self.groups = groups

    async def _window(self, principal: Principal, feed: str) -> list[dict[str, Any]]:
        """The newest visible activities of ``feed`` (up to ``SCAN``), newest first."""
        docs: list[dict[str, Any]] = []
        query = PageQuery(limit=self.feeds.max_page)
        while len(docs) < SCAN:
            page = await self.feeds.read(principal, feed, query)
            docs += [orjson.loads(b) for b in page.bodies]
            if not page.next:
                break
            query = PageQuery(limit=self.feeds.max_page, id_lt=page.next.get("id_lt"))
        return docs

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
        if not 1 <= limit <= self.feeds.max_page:
            raise Invalid(f"limit must be 1..{self.feeds.max_page}", errors=[{"loc": "limit", "msg": "range"}])
        group = self.groups.of(feed)
        docs = [d for d in await self._window(principal, feed) if actor_id(d) not in discard]
        groups = aggregate(feed, group.aggregation_format, docs)
        start = 0
        if id_lt:
            ids = [g["id"] for g in groups]
            start = ids.index(id_lt) + 1 if id_lt in ids else len(groups)
        start += offset
        page = groups[start : start + limit]
        nxt = page[-1]["id"] if start + limit < len(groups) and page else None
        if group.type != "notification":
            return GroupPage(page, nxt)
        all_ids = [d["id"] for d in docs]
        _, _, seen, read = await self.feeds.store.marks(feed, "counts", all_ids)
        seen_ids = {i for i, s in zip(all_ids, seen, strict=True) if s}
        read_ids = {i for i, r in zip(all_ids, read, strict=True) if r}
        for g in groups:
            ids_of = [a["id"] for a in g["activities"]]
            g["is_seen"] = all(i in seen_ids for i in ids_of)
            g["is_read"] = all(i in read_ids for i in ids_of)
        unseen = sum(not g["is_seen"] for g in groups)
        unread = sum(not g["is_read"] for g in groups)
        for mode, which in (("seen", mark_seen), ("read", mark_read)):
            if which:
                await self._mark(principal, feed, groups, mode, which)
        return GroupPage(page, nxt, unseen, unread)

    def _may_mark(self, principal: Principal, feed: str) -> None:
        owner = principal.sub is not None and feed == notification_feed(principal.sub)
        if not owner and not principal.rights(feed) & (Right.WRITE | Right.ADMIN):
            raise Forbidden(f"no right to mark {feed}")

    async def _mark(
        self,
        principal: Principal,
        feed: str,
        groups: list[dict[str, Any]],
        mode: str,
        which: str,
    ) -> None:
        self._may_mark(principal, feed)
        if which.lower() in ("true", "1", "all"):
            chosen = groups
        else:
            wanted = {w for w in which.split(",") if w}
            chosen = [g for g in groups if g["id"] in wanted]
        ids = [a["id"] for g in chosen for a in g["activities"]]
        if ids:
            await self.feeds.store.marks(feed, mode, ids)

    async def mark(self, principal: Principal, feed: str, mode: str, raw: Any) -> tuple[int, int]:
        """Mark ``{"ids": [group ids]}`` or ``{"all": true}`` seen or read; the new group counts."""
        self.feeds.require(principal, feed, Right.READ)
        if not isinstance(raw, dict) or not (raw.get("all") is True or isinstance(raw.get("ids"), list)):
            raise Invalid('give {"ids": [group ids]} or {"all": true}', errors=[{"loc": "ids", "msg": "ids or all"}])
        which = "true" if raw.get("all") is True else ",".join(str(i) for i in raw["ids"])
        seen, read = (which, "") if mode == "seen" else ("", which)
        await self.read(principal, feed, limit=self.feeds.max_page, mark_seen=seen, mark_read=read)
        after = await self.read(principal, feed, limit=1)
        return after.unseen or 0, after.unread or 0
