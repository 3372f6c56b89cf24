"""Reactions (SPEC §12): likes, comments… on activities, and child reactions on reactions.

A reaction ``{id, kind, activity_id, user_id, data, parent, target_feeds, created_at, updated_at}``
lives in the slot of its activity's feed — the origin feed when the activity is a copy — and is
added, updated or deleted by one script that also logs a ``reaction.*`` change event of that feed
(``lua/reaction.lua``): subscribers of the feed get it live, and resume replays it, with the
activity's own visibility. Lookups by reaction id and by user are small indexes in slots of their
own, written by separate calls after the script (never a cross-slot script).

Reads enrich activities with ``reaction_counts``, ``latest_reactions`` and ``own_reactions``
(``{kind: …}``), GetStream's ``withReactionCounts``/``withRecentReactions``/``withOwnReactions``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import orjson

from .acl import Principal, Right, follow_origin
from .backends.base import Pipeline
from .calls import Calls, pairs, text
from .errors import Conflict, Forbidden, Invalid, NotFound
from .keys import Keys
from .models import IdGenerator, check_feed_name, dumps, format_time, now
from .service import FeedService
from .store import new_epoch

T = TypeVar("T")

#: Largest page of a reaction listing, and of latest/own reactions per kind in enriched reads.
MAX_LIMIT = 100
DEFAULT_RECENT = 10
_MAX_KIND = 255
_MAX_DATA = 10240


def _lua(name: str) -> str:
    lua = resources.files(__package__).joinpath("lua")
    return lua.joinpath("_common.lua").read_text() + "\n" + lua.joinpath(name).read_text()


def _text(value: Any, loc: str, *, max_len: int = 128) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len or not value.isprintable():
        raise Invalid(f"{loc} must be 1..{max_len} printable characters", errors=[{"loc": loc, "msg": "bad value"}])
    return value


@dataclass(frozen=True, slots=True)
class EnrichFlags:
    """What an enriched read adds to each activity."""

    own: bool = False
    recent: bool = False
    counts: bool = False
    kinds: tuple[str, ...] = ()
    recent_limit: int = DEFAULT_RECENT

    @property
    def any(self) -> bool:
        """True if anything is asked for."""
        return self.own or self.recent or self.counts


class ReactionStore:
    """Reactions in Redis, over the command pipeline."""

    def __init__(self, pipeline: Pipeline, keys: Keys, *, timeout: float, resume_window: int) -> None:
        self.calls = Calls(pipeline, timeout)
        self.keys = keys
        self._window = resume_window
        self._script = self.calls.script(_lua("reaction.lua"))

    async def change(self, op: str, feed: str, reaction: dict[str, Any]) -> dict[str, Any]:
        """Run ``lua/reaction.lua``; the stored reaction (404/409 on missing/conflict)."""
        target = reaction.get("parent") or reaction["activity_id"]
        rx_keys = self.keys.reactions(feed, target, reaction["kind"], reaction["user_id"])
        args = [
            op,
            new_epoch(),
            feed,
            self._window,
            reaction["activity_id"],
            reaction["id"],
            dumps(reaction),
            reaction["kind"],
            reaction["user_id"],
        ]
        reply = await self.calls.eval(self._script, [*self.keys.feed(feed), *rx_keys], args)
        status = text(reply[0])
        if status == "missing":
            raise NotFound(f"activity {reaction['activity_id']} or reaction {reaction['id']} not found")
        if status == "conflict":
            raise Conflict(f"reaction {reaction['id']} already exists")
        stored: dict[str, Any] = orjson.loads(reply[1])
        rid = reaction["id"]
        locator = self.keys.reaction_locator(rid)
        ids, feeds = self.keys.user_reactions(reaction["user_id"])
        if op == "add":
            await self.calls.many(
                [(locator, "SET", locator, feed), (ids, "ZADD", ids, 0, rid), (feeds, "HSET", feeds, rid, feed)]
            )
        elif op == "delete":
            await self.calls.many([(locator, "DEL", locator), (ids, "ZREM", ids, rid), (feeds, "HDEL", feeds, rid)])
        return stored

    async def locate(self, reaction_id: str) -> tuple[str, dict[str, Any]] | None:
        """(feed, reaction) of a reaction id, or None."""
        locator = self.keys.reaction_locator(reaction_id)
        feed = await self.calls.cmd(locator, "GET", locator)
        if feed is None:
            return None
        feed = text(feed)
        rx = self.keys.reactions(feed, "")[0]
        raw = await self.calls.cmd(rx, "HGET", rx, reaction_id)
        return (feed, orjson.loads(raw)) if raw is not None else None

    async def _bodies(self, feed: str, ids: Sequence[Any]) -> list[dict[str, Any]]:
        if not ids:
            return []
        rx = self.keys.reactions(feed, "")[0]
        return [orjson.loads(b) for b in await self.calls.cmd(rx, "HMGET", rx, *ids) if b is not None]

    async def page(
        self, feed: str, index: str, *, limit: int, id_lt: str = "", id_gt: str = ""
    ) -> list[dict[str, Any]]:
        """Reactions of one index, newest first (``id_gt`` alone: the nearest newer ones)."""
        high = f"({id_lt}" if id_lt else "+"
        low = f"({id_gt}" if id_gt else "-"
        if id_gt and not id_lt:
            ids = list(reversed(await self.calls.cmd(index, "ZRANGEBYLEX", index, low, high, "LIMIT", 0, limit)))
        else:
            ids = await self.calls.cmd(index, "ZREVRANGEBYLEX", index, high, low, "LIMIT", 0, limit)
        return await self._bodies(feed, ids)

    async def user_page(self, user: str, *, limit: int, id_lt: str = "", id_gt: str = "") -> list[dict[str, Any]]:
        """A user's reactions, newest first."""
        ids_key, feeds_key = self.keys.user_reactions(user)
        high = f"({id_lt}" if id_lt else "+"
        low = f"({id_gt}" if id_gt else "-"
        ids = await self.calls.cmd(ids_key, "ZREVRANGEBYLEX", ids_key, high, low, "LIMIT", 0, limit)
        if not ids:
            return []
        feeds = await self.calls.cmd(feeds_key, "HMGET", feeds_key, *ids)
        commands = []
        for rid, feed in zip(ids, feeds, strict=True):
            rx = self.keys.reactions(text(feed) if feed else "", "")[0]
            commands.append((rx, "HGET", rx, rid))
        return [orjson.loads(b) for b in await self.calls.many(commands) if b is not None]

    async def enrichment(
        self, targets: Sequence[tuple[str, str]], flags: EnrichFlags, user: str | None
    ) -> list[dict[str, Any]]:
        """For each (feed, activity id): ``{"reaction_counts", "latest_reactions", "own_reactions"}``."""
        count_keys = [self.keys.reactions(feed, aid)[3] for feed, aid in targets]
        counts_raw = await self.calls.many([(k, "HGETALL", k) for k in count_keys])
        counts = [{text(k): int(v) for k, v in pairs(c)} for c in counts_raw]
        commands: list[tuple[Any, ...]] = []
        plan: list[tuple[int, str, str]] = []  # (target index, field, kind)
        for i, ((feed, aid), kinds_count) in enumerate(zip(targets, counts, strict=True)):
            if flags.recent:
                for kind in (k for k in kinds_count if not flags.kinds or k in flags.kinds):
                    key = self.keys.reactions(feed, aid, kind)[2]
                    commands.append((key, "ZREVRANGEBYLEX", key, "+", "-", "LIMIT", 0, flags.recent_limit))
                    plan.append((i, "latest_reactions", kind))
            if flags.own and user:
                key = self.keys.reactions(feed, aid, user=user)[4]
                commands.append((key, "ZREVRANGEBYLEX", key, "+", "-", "LIMIT", 0, MAX_LIMIT))
                plan.append((i, "own_reactions", ""))
        id_lists = await self.calls.many(commands)
        fetch: list[tuple[Any, ...]] = []
        for (i, _, _), ids in zip(plan, id_lists, strict=True):
            rx = self.keys.reactions(targets[i][0], "")[0]
            fetch.append((rx, "HMGET", rx, *ids) if ids else (rx, "ECHO", ""))
        bodies = await self.calls.many(fetch)
        return _assemble(counts, plan, bodies, flags)


def _assemble(
    counts: list[dict[str, int]], plan: list[tuple[int, str, str]], bodies: list[Any], flags: EnrichFlags
) -> list[dict[str, Any]]:
    """The enrichment fields of each target from the pipelined replies of ``enrichment``."""
    out: list[dict[str, Any]] = []
    for kinds_count in counts:
        shown = {k: n for k, n in kinds_count.items() if not flags.kinds or k in flags.kinds}
        entry: dict[str, Any] = {}
        if flags.counts:
            entry["reaction_counts"] = shown
        if flags.recent:
            entry["latest_reactions"] = {}
        if flags.own:
            entry["own_reactions"] = {}
        out.append(entry)
    for (i, field, kind), found in zip(plan, bodies, strict=True):
        docs = [orjson.loads(b) for b in found if b] if isinstance(found, list) else []
        if field == "latest_reactions":
            out[i][field][kind] = docs
        else:
            for doc in docs:
                if not flags.kinds or doc["kind"] in flags.kinds:
                    own = out[i][field].setdefault(doc["kind"], [])
                    if len(own) < flags.recent_limit:
                        own.append(doc)
    return out


class ReactionService:
    """Reaction use cases; rights come from the activity's feed."""

    def __init__(self, feeds: FeedService, store: ReactionStore) -> None:
        self.feeds = feeds
        self.store = store
        self._new_id = IdGenerator()

    async def _home(self, principal: Principal, feed: str, activity_id: str) -> str:
        """The feed holding the reactions of ``activity_id`` as seen in ``feed`` (the origin for a
        copy); 404 when the caller cannot see the activity."""
        raw = await self.feeds.get(principal, feed, activity_id)  # read right + visibility
        doc = orjson.loads(raw)
        origin = follow_origin(doc) or doc.get("origin")
        return origin if isinstance(origin, str) else feed

    async def add(self, principal: Principal, raw: Any) -> dict[str, Any]:
        """Add a reaction ``{kind, activity_id, feed, data?, user_id?, parent?, target_feeds?, id?}``."""
        if not isinstance(raw, dict):
            raise Invalid("a reaction object is required", errors=[{"loc": "", "msg": "object"}])
        kind = _text(raw.get("kind"), "kind", max_len=_MAX_KIND)
        user = self._user(principal, raw.get("user_id"))
        parent_id = raw.get("parent") or ""
        if parent_id:
            found = await self.store.locate(_text(parent_id, "parent"))
            if found is None:
                raise NotFound(f"reaction {parent_id} not found")
            feed, parent = found
            activity_id = parent["activity_id"]
            await self.feeds.get(principal, feed, activity_id)
        else:
            activity_id = _text(raw.get("activity_id"), "activity_id")
            feed = await self._home(principal, check_feed_name(_text(raw.get("feed"), "feed")), activity_id)
        data = raw.get("data") or {}
        if not isinstance(data, dict) or len(dumps(data)) > _MAX_DATA:
            raise Invalid("data must be an object of at most 10 KB", errors=[{"loc": "data", "msg": "object"}])
        targets = raw.get("target_feeds") or []
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets) or len(targets) > 100:
            raise Invalid("target_feeds must be a list of feed names", errors=[{"loc": "target_feeds", "msg": "list"}])
        for target in targets:
            self.feeds.require(principal, check_feed_name(target), Right.WRITE)
        stamp = format_time(now())
        reaction = {
            "id": _text(raw["id"], "id") if raw.get("id") else self._new_id(int(time.time() * 1000)),
            "kind": kind,
            "activity_id": activity_id,
            "user_id": user,
            "data": data,
            "parent": parent_id,
            "target_feeds": targets,
            "created_at": stamp,
            "updated_at": stamp,
        }
        stored = await self.store.change("add", feed, reaction)
        for target in targets:  # GetStream: an activity for the reaction in each target feed
            activity = {
                "actor": user,
                "verb": kind,
                "object": f"SR:{reaction['id']}",
                "foreign_id": f"SR:{reaction['id']}",
                "reaction": reaction["id"],
                **(raw.get("target_feeds_extra_data") or {}),
            }
            await self.feeds.post(principal, target, [activity], batch=False)
        return stored

    def _user(self, principal: Principal, given: Any) -> str:
        if given is None or given == principal.sub:
            if principal.sub is None:
                raise Forbidden("reactions need an authenticated caller")
            return principal.sub
        if not principal.admin:
            raise Forbidden("only admins may react as another user")
        return _text(given, "user_id")

    async def _mine(self, principal: Principal, reaction_id: str) -> tuple[str, dict[str, Any]]:
        found = await self.store.locate(reaction_id)
        if found is None:
            raise NotFound(f"reaction {reaction_id} not found")
        feed, reaction = found
        if reaction["user_id"] != principal.sub:  # one's own reactions stay reachable from a copy
            await self.feeds.get(principal, feed, reaction["activity_id"])
        return feed, reaction

    async def get(self, principal: Principal, reaction_id: str) -> dict[str, Any]:
        """One reaction (404 when missing or its activity is hidden from the caller)."""
        return (await self._mine(principal, reaction_id))[1]

    async def update(self, principal: Principal, reaction_id: str, raw: Any) -> dict[str, Any]:
        """Replace ``data`` (and ``target_feeds``) of one's own reaction (admins: any)."""
        feed, reaction = await self._mine(principal, reaction_id)
        self._check_owner(principal, feed, reaction)
        if not isinstance(raw, dict):
            raise Invalid("an object is required", errors=[{"loc": "", "msg": "object"}])
        data = raw.get("data", reaction.get("data") or {})
        if not isinstance(data, dict) or len(dumps(data)) > _MAX_DATA:
            raise Invalid("data must be an object of at most 10 KB", errors=[{"loc": "data", "msg": "object"}])
        updated = {**reaction, "data": data, "updated_at": format_time(now())}
        if isinstance(raw.get("target_feeds"), list):
            updated["target_feeds"] = raw["target_feeds"]
        return await self.store.change("update", feed, updated)

    async def delete(self, principal: Principal, reaction_id: str) -> None:
        """Delete one's own reaction (feed admins: any)."""
        feed, reaction = await self._mine(principal, reaction_id)
        self._check_owner(principal, feed, reaction)
        await self.store.change("delete", feed, reaction)

    @staticmethod
    def _check_owner(principal: Principal, feed: str, reaction: dict[str, Any]) -> None:
        if reaction["user_id"] != principal.sub and not principal.rights(feed) & Right.ADMIN:
            raise Forbidden("only the reaction's user or a feed admin may change it")

    async def listing(
        self,
        principal: Principal,
        by: str,
        value: str,
        *,
        kind: str = "",
        limit: int = 25,
        id_lt: str = "",
        id_gt: str = "",
        feed: str = "",
    ) -> list[dict[str, Any]]:
        """Reactions by ``activity_id`` (needs ``feed``), ``reaction_id`` (children) or ``user_id``."""
        if not 1 <= limit <= MAX_LIMIT:
            raise Invalid(f"limit must be 1..{MAX_LIMIT}", errors=[{"loc": "limit", "msg": "range"}])
        if by == "user_id":
            if value != principal.sub and not principal.admin:
                raise Forbidden("only the user itself or an admin lists a user's reactions")
            found = await self.store.user_page(value, limit=limit * 4 if kind else limit, id_lt=id_lt, id_gt=id_gt)
            return [r for r in found if not kind or r["kind"] == kind][:limit]
        if by == "reaction_id":
            home, _ = await self._mine(principal, value)
        elif by == "activity_id":
            home = await self._home(principal, check_feed_name(_text(feed, "feed")), value)
        else:
            raise Invalid("lookup must be activity_id, reaction_id or user_id", errors=[{"loc": "by", "msg": "enum"}])
        rx = self.store.keys.reactions(home, value, kind)
        return await self.store.page(home, rx[2] if kind else rx[1], limit=limit, id_lt=id_lt, id_gt=id_gt)

    async def enrich(self, principal: Principal, docs: list[dict[str, Any]], flags: EnrichFlags) -> None:
        """Add reaction fields to ``docs`` in place (reactions of a copy are its origin's)."""
        if not flags.any or not docs:
            return
        targets = []
        for doc in docs:
            origin = doc.get("origin")
            targets.append((origin if isinstance(origin, str) else doc.get("feed", ""), doc["id"]))
        for doc, extra in zip(docs, await self.store.enrichment(targets, flags, principal.sub), strict=True):
            doc.update(extra)
