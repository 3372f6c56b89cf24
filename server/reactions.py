"""Reactions (SPEC §12): likes, comments… on activities, and child reactions on reactions.

A reaction ``{id, kind, activity_id, user_id, data, parent, target_feeds, created_at, updated_at}``
lives in the slot of its activity's feed — the origin feed when the activity is a copy — and is
added, updated or deleted by one script that also logs a ``reaction.*`` change event of that feed
(``lua/reaction.lua``): subscribers of the feed get it live, and resume replays it, with the
activity's own visibility. Lookups by reaction id and by user are small indexes in slots of their
own, written by separate calls after the script (never a cross-slot script).

Reads enrich activities with ``reaction_counts``, ``latest_reactions`` and ``own_reactions``
(``{kind: …}``), GetStream's ``withReactionCounts``/``withRecentReactions``/``withOwnReactions``;
every reaction answered carries ``children_counts`` and ``latest_children`` (and ``own_children``
on request). All of it is read by ``lua/reaction_read.lua``, one call per feed slot, as JSON text
that callers splice into the stored activity bodies.

A reaction's child reactions go with it, and an activity's reactions go with the activity
(``ReactionService.forget_activity``: called after the API deletions, and by any read that meets
reactions of an activity that is gone, e.g. trimmed): adding a reaction needs its activity, so once
the activity is gone the set can only shrink and the cleanup never races a new reaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import orjson

from .acl import ALL_RIGHTS, Principal, Right, follow_origin
from .backends.base import Pipeline
from .calls import Calls, text
from .errors import Conflict, Forbidden, Invalid, NotFound
from .keys import Keys
from .models import IdGenerator, check_feed_name, dumps, format_time, now
from .service import FeedService
from .store import load_script, new_epoch

T = TypeVar("T")
log = logging.getLogger("feedserver.reactions")

#: Largest page of a reaction listing, and of latest/own reactions per kind in enriched reads.
MAX_LIMIT = 100
DEFAULT_RECENT = 10
#: Levels of child reactions below a reaction (a child of a child of a child is the deepest).
_MAX_DEPTH = 3
_MAX_KIND = 255
_MAX_DATA = 10240


def _source(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(name).read_text()


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
    #: ``own_children`` on each reaction (GetStream's ``withOwnChildren``).
    own_children: bool = False
    #: Child reactions per kind in each reaction's ``latest_children``.
    children_limit: int = DEFAULT_RECENT

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
        self._script = self.calls.script(load_script("reaction.lua"))
        self._read = self.calls.script(_source("reaction_read.lua"))

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
            reaction.get("parent") or "",
        ]
        keys = [*self.keys.feed(feed), *rx_keys, self.keys.reaction_parents(feed), self.keys.reaction_summaries(feed)]
        reply = await self.calls.eval(self._script, keys, args)
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

    # -- reads (lua/reaction_read.lua: one call per feed slot) --------------------------------

    def _read_call(
        self, feed: str, mode: str, ids: Sequence[str], flags: EnrichFlags, user: str | None
    ) -> Awaitable[Any]:
        rx = self.keys.reactions(feed, "")[0]
        parts = ("c" if flags.counts else "") + ("r" if flags.recent else "") + ("o" if flags.own else "")
        parts += "O" if flags.own_children else ""
        parts += "C" if flags.recent_limit == flags.children_limit == DEFAULT_RECENT else ""
        args = [mode, rx[:-2], user or "", flags.recent_limit, flags.children_limit, parts or "-"]
        args += [len(flags.kinds), *flags.kinds, *ids]
        keys = [rx, self.keys.feed(feed).acts, self.keys.reaction_parents(feed), self.keys.reaction_summaries(feed)]
        return self.calls.eval(self._read, keys, args)

    async def fragments(self, targets: Sequence[tuple[str, str]], flags: EnrichFlags, user: str | None) -> list[bytes]:
        """For each (feed, activity id): the JSON text ``"reaction_counts":…,"latest_reactions":…,
        "own_reactions":…`` (the parts ``flags`` ask for), one script call per feed, all pipelined."""
        by_feed: dict[str, list[int]] = {}
        for i, (feed, _) in enumerate(targets):
            by_feed.setdefault(feed, []).append(i)
        replies = await asyncio.gather(
            *(self._read_call(feed, "a", [targets[i][1] for i in at], flags, user) for feed, at in by_feed.items())
        )
        out: list[bytes] = [b""] * len(targets)
        for at, reply in zip(by_feed.values(), replies, strict=True):
            for i, fragment in zip(at, reply, strict=True):
                out[i] = fragment
        return out

    async def read(
        self, feed: str, ids: Sequence[Any], flags: EnrichFlags, user: str | None
    ) -> tuple[list[bytes], list[str]]:
        """The reactions ``ids`` of ``feed`` with their children's fields (missing ones skipped),
        and the ids of activities found gone (their reactions are hidden)."""
        if not ids:
            return [], []
        found: list[bytes] = []
        gone: list[str] = []
        for body in await self._read_call(feed, "r", [text(i) for i in ids], flags, user):
            if body.startswith(b"\0"):
                gone.append(body[1:].decode())
            elif body:
                found.append(body)
        return found, gone

    async def page_ids(self, index: str, *, limit: int, id_lt: str = "", id_gt: str = "") -> list[Any]:
        """Reaction ids of one index, newest first (``id_gt`` alone: the nearest newer ones)."""
        high = f"({id_lt}" if id_lt else "+"
        low = f"({id_gt}" if id_gt else "-"
        if id_gt and not id_lt:
            return list(reversed(await self.calls.cmd(index, "ZRANGEBYLEX", index, low, high, "LIMIT", 0, limit)))
        return list(await self.calls.cmd(index, "ZREVRANGEBYLEX", index, high, low, "LIMIT", 0, limit))

    async def user_ids(self, user: str, *, limit: int, id_lt: str = "", id_gt: str = "") -> list[tuple[str, str]]:
        """(feed, reaction id) of a user's reactions, newest first."""
        ids_key, feeds_key = self.keys.user_reactions(user)
        high = f"({id_lt}" if id_lt else "+"
        low = f"({id_gt}" if id_gt else "-"
        ids = await self.calls.cmd(ids_key, "ZREVRANGEBYLEX", ids_key, high, low, "LIMIT", 0, limit)
        if not ids:
            return []
        feeds = await self.calls.cmd(feeds_key, "HMGET", feeds_key, *ids)
        return [(text(f), text(i)) for i, f in zip(ids, feeds, strict=True) if f is not None]

    # -- removal of whole subtrees (child reactions, an activity's reactions) -----------------

    async def subtree(self, feed: str, roots: Sequence[str]) -> list[dict[str, Any]]:
        """Every reaction below the targets ``roots`` (activity or reaction ids), level by level."""
        found: list[dict[str, Any]] = []
        level = list(roots)
        seen: set[str] = set(level)
        rx = self.keys.reactions(feed, "")[0]
        for _ in range(_MAX_DEPTH + 1):
            if not level:
                break
            indexes = [self.keys.reactions(feed, t)[1] for t in level]
            lists = await self.calls.many([(k, "ZRANGE", k, 0, -1) for k in indexes])
            ids = [text(i) for ids in lists for i in ids if text(i) not in seen]
            seen.update(ids)
            level = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for body in await self.calls.cmd(rx, "HMGET", rx, *chunk):
                    if body is not None:
                        doc = orjson.loads(body)
                        found.append(doc)
                        level.append(doc["id"])
        return found

    async def remove(self, feed: str, roots: Sequence[str], reactions: Sequence[dict[str, Any]]) -> None:
        """Delete ``reactions`` (found by ``subtree(feed, roots)``) and every index of ``roots`` and of
        them: bodies, per-target indexes and counts (one slot), locators and users' lists (theirs)."""
        rx = self.keys.reactions(feed, "")[0]
        keys: set[str] = set()
        for target in [*roots, *(r["id"] for r in reactions)]:
            _, index, _, counts, _ = self.keys.reactions(feed, target)
            keys.update((index, counts))
        for r in reactions:
            _, _, by_kind, _, by_user = self.keys.reactions(
                feed, r["parent"] or r["activity_id"], r["kind"], r["user_id"]
            )
            keys.update((by_kind, by_user))
        commands: list[tuple[Any, ...]] = [(k, "DEL", k) for k in sorted(keys)]
        ids = [r["id"] for r in reactions]
        commands += [(rx, "HDEL", rx, *ids[i : i + 500]) for i in range(0, len(ids), 500)]
        gone = [*roots, *ids]
        for key in (self.keys.reaction_parents(feed), self.keys.reaction_summaries(feed)):
            commands += [(key, "HDEL", key, *gone[i : i + 500]) for i in range(0, len(gone), 500)]
        for r in reactions:
            locator = self.keys.reaction_locator(r["id"])
            user_ids, user_feeds = self.keys.user_reactions(r["user_id"])
            commands += [
                (locator, "DEL", locator),
                (user_ids, "ZREM", user_ids, r["id"]),
                (user_feeds, "HDEL", user_feeds, r["id"]),
            ]
        for start in range(0, len(commands), 1000):
            await self.calls.many(commands[start : start + 1000])

    async def activity_exists(self, feed: str, activity_id: str) -> bool:
        """True while ``feed`` holds ``activity_id``."""
        acts = self.keys.feed(feed).acts
        return bool(await self.calls.cmd(acts, "HEXISTS", acts, activity_id))


class ReactionService:
    """Reaction use cases; rights come from the activity's feed."""

    def __init__(self, feeds: FeedService, store: ReactionStore) -> None:
        self.feeds = feeds
        self.store = store
        self._new_id = IdGenerator()
        self._system = Principal(sub="", admin=True, feeds=(("*", ALL_RIGHTS),), kind="api_key")

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
        return {**stored, "children_counts": {}, "latest_children": {}}

    def _user(self, principal: Principal, given: Any) -> str:
        if given is None or given == principal.sub:
            if principal.sub is None:
                raise Forbidden("reactions need an authenticated caller")
            return principal.sub
        if not principal.admin:
            raise Forbidden("only admins may react as another user")
        return _text(given, "user_id")

    async def _mine(self, principal: Principal, reaction_id: str, *, alive: bool = True) -> tuple[str, dict[str, Any]]:
        """(feed, stored reaction) if the caller may see it; ``alive``: also check (for one's own
        reactions, which skip the visibility check) that its activity still exists."""
        found = await self.store.locate(reaction_id)
        if found is None:
            raise NotFound(f"reaction {reaction_id} not found")
        feed, reaction = found
        if reaction["user_id"] != principal.sub:  # one's own reactions stay reachable from a copy
            await self.feeds.get(principal, feed, reaction["activity_id"])
        elif alive and not await self.store.activity_exists(feed, reaction["activity_id"]):
            await self.forget_activity(feed, reaction["activity_id"])
            raise NotFound(f"reaction {reaction_id} not found")
        return feed, reaction

    async def _shown(
        self, principal: Principal, feed: str, ids: Sequence[Any], flags: EnrichFlags | None = None
    ) -> list[dict[str, Any]]:
        """Reactions ``ids`` of ``feed`` as answered: with ``children_counts``/``latest_children``;
        those of a deleted activity are left out (and their cleanup done)."""
        found, gone = await self.store.read(feed, ids, flags or EnrichFlags(), principal.sub)
        for activity_id in dict.fromkeys(gone):
            await self.forget_activity(feed, activity_id)
        return [orjson.loads(b) for b in found]

    async def get(self, principal: Principal, reaction_id: str, flags: EnrichFlags | None = None) -> dict[str, Any]:
        """One reaction (404 when missing or its activity is hidden from the caller)."""
        feed, _ = await self._mine(principal, reaction_id, alive=False)  # _shown checks it
        shown = await self._shown(principal, feed, [reaction_id], flags)
        if not shown:
            raise NotFound(f"reaction {reaction_id} not found")
        return shown[0]

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
        stored = await self.store.change("update", feed, updated)
        shown = await self._shown(principal, feed, [reaction_id])
        return shown[0] if shown else stored

    async def delete(self, principal: Principal, reaction_id: str) -> None:
        """Delete one's own reaction (feed admins: any), its child reactions, and the activities it
        made in its target feeds."""
        feed, reaction = await self._mine(principal, reaction_id)
        self._check_owner(principal, feed, reaction)
        await self.store.change("delete", feed, reaction)
        below = await self.store.subtree(feed, [reaction_id])
        await self.store.remove(feed, [reaction_id], below)
        await self._drop_target_activities([reaction, *below])

    async def forget_activity(self, feed: str, activity_id: str) -> int:
        """Remove every reaction of ``activity_id`` once ``feed`` no longer holds it (its child
        reactions, indexes, counts, users' lists and target-feed activities); how many went.
        Safe to call at any time: nothing happens while the activity exists. New reactions cannot
        appear meanwhile: adding one needs the activity (``lua/reaction.lua``)."""
        if await self.store.activity_exists(feed, activity_id):
            return 0
        reactions = await self.store.subtree(feed, [activity_id])
        await self.store.remove(feed, [activity_id], reactions)
        await self._drop_target_activities(reactions)
        return len(reactions)

    async def activities_deleted(self, feed: str, docs: Sequence[dict[str, Any]]) -> None:
        """After activities of ``feed`` were deleted: their reactions go (copies have none of their
        own: a copy's reactions are its origin's). Failures are logged; the deletion stands."""
        for doc in docs:
            if doc.get("origin") or follow_origin(doc) or not isinstance(doc.get("id"), str):
                continue
            try:
                await self.forget_activity(feed, doc["id"])
            except Exception:
                log.exception("removing the reactions of %s in %s failed", doc.get("id"), feed)

    async def _drop_target_activities(self, reactions: Sequence[dict[str, Any]]) -> None:
        for reaction in reactions:
            for target in reaction.get("target_feeds") or ():
                try:
                    await self.feeds.delete_foreign_id(self._system, target, f"SR:{reaction['id']}")
                except Exception:
                    log.exception("removing reaction %s's activity from %s failed", reaction["id"], target)

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
        flags: EnrichFlags | None = None,
    ) -> list[dict[str, Any]]:
        """Reactions by ``activity_id`` (needs ``feed``), ``reaction_id`` (children) or ``user_id``."""
        if not 1 <= limit <= MAX_LIMIT:
            raise Invalid(f"limit must be 1..{MAX_LIMIT}", errors=[{"loc": "limit", "msg": "range"}])
        if by == "user_id":
            if value != principal.sub and not principal.admin:
                raise Forbidden("only the user itself or an admin lists a user's reactions")
            located = await self.store.user_ids(value, limit=limit * 4 if kind else limit, id_lt=id_lt, id_gt=id_gt)
            by_feed: dict[str, list[str]] = {}
            for home, rid in located:
                by_feed.setdefault(home, []).append(rid)
            shown = await asyncio.gather(*(self._shown(principal, f, ids, flags) for f, ids in by_feed.items()))
            order = {rid: i for i, (_, rid) in enumerate(located)}
            found = sorted((r for part in shown for r in part), key=lambda r: order[r["id"]])
            return [r for r in found if not kind or r["kind"] == kind][:limit]
        if by == "reaction_id":
            home, _ = await self._mine(principal, value)
        elif by == "activity_id":
            home = await self._home(principal, check_feed_name(_text(feed, "feed")), value)
        else:
            raise Invalid("lookup must be activity_id, reaction_id or user_id", errors=[{"loc": "by", "msg": "enum"}])
        rx = self.store.keys.reactions(home, value, kind)
        ids = await self.store.page_ids(rx[2] if kind else rx[1], limit=limit, id_lt=id_lt, id_gt=id_gt)
        return await self._shown(principal, home, ids, flags)

    @staticmethod
    def home_of(doc: dict[str, Any]) -> str:
        """The feed holding the reactions of the activity ``doc`` (its origin, for a copy)."""
        origin = doc.get("origin")
        return origin if isinstance(origin, str) else doc.get("feed", "")

    async def fragments(self, principal: Principal, docs: Sequence[dict[str, Any]], flags: EnrichFlags) -> list[bytes]:
        """For each activity: the JSON text of its reaction fields (``"reaction_counts":…`` …),
        to splice into its body."""
        return await self.store.fragments([(self.home_of(d), d["id"]) for d in docs], flags, principal.sub)

    async def enrich(self, principal: Principal, docs: list[dict[str, Any]], flags: EnrichFlags) -> None:
        """Add reaction fields to ``docs`` in place (reactions of a copy are its origin's)."""
        if not flags.any or not docs:
            return
        for doc, fragment in zip(docs, await self.fragments(principal, docs, flags), strict=True):
            doc.update(orjson.loads(b"{" + fragment + b"}"))
