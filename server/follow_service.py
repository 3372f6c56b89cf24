"""Follow use cases (SPEC §12): rights and validation around ``follows.Fanout`` / ``FollowStore``.

Who may do what: following ``target`` from ``feed`` needs ``write`` on ``feed`` (it changes what
``feed`` shows) and ``read`` on ``target``; unfollowing needs ``write`` on ``feed``; listing
followers or followed feeds needs ``read`` on the listed feed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .acl import Principal, Right
from .errors import Invalid, PayloadTooLarge
from .follows import Fanout, FollowStore, now_ms
from .models import check_feed_name, format_time
from .service import FeedService

#: GetStream's default and maximum ``activity_copy_limit``.
DEFAULT_COPY_LIMIT = 100
MAX_COPY_LIMIT = 1000
#: Follow relations per follow_many / unfollow_many call.
MAX_BATCH = 2500
#: Follows of one batch made at the same time.
_CONCURRENT = 64


@dataclass(frozen=True, slots=True)
class FollowRow:
    """One listed relation: ``feed_id`` follows ``target_id`` since ``created_at``."""

    feed_id: str
    target_id: str
    created_at: str

    def as_json(self) -> dict[str, Any]:
        """The wire form (GetStream's field names)."""
        return {"feed_id": self.feed_id, "target_id": self.target_id, "created_at": self.created_at}


class FollowService:
    """Follow, unfollow, list and count follows; built in ``app.py``."""

    def __init__(self, feeds: FeedService, store: FollowStore, fanout: Fanout) -> None:
        self.feeds = feeds
        self.store = store
        self.fanout = fanout

    def _check_pair(self, principal: Principal, feed: str, target: str) -> None:
        if feed == target:
            raise Invalid(
                "a feed cannot follow itself", errors=[{"loc": "target", "msg": "same feed", "type": "value_error"}]
            )
        self.feeds.require(principal, feed, Right.WRITE)
        self.feeds.require(principal, target, Right.READ)

    async def follow(self, principal: Principal, feed: str, target: str, *, copy_limit: int | None = None) -> FollowRow:
        """``feed`` follows ``target``: the newest ``copy_limit`` activities of ``target`` are copied
        into ``feed`` now, every later change by the fan-out."""
        limit = _copy_limit(copy_limit)
        self._check_pair(principal, feed, target)
        ms = now_ms()
        await self.store.add(feed, target, ms)
        await self.fanout.snapshot(feed, target, limit)
        return FollowRow(feed, target, format_ms(ms))

    async def unfollow(self, principal: Principal, feed: str, target: str, *, keep_history: bool = False) -> bool:
        """Stop ``feed`` following ``target``; its copies go unless ``keep_history``."""
        check_feed_name(target)
        self.feeds.require(principal, feed, Right.WRITE)
        removed = await self.store.remove(feed, target)
        if not keep_history:
            await self.fanout.remove_copies(feed, target)
        return removed

    async def follow_many(self, principal: Principal, pairs: Any, *, copy_limit: int | None = None) -> list[FollowRow]:
        """Many follows ``[{"source": feed, "target": feed}]``; all are checked before any is made."""
        checked = self._pairs(principal, pairs, need_read=True)
        limit = _copy_limit(copy_limit)

        async def one(source: str, target: str) -> FollowRow:
            ms = now_ms()
            await self.store.add(source, target, ms)
            await self.fanout.snapshot(source, target, limit)
            return FollowRow(source, target, format_ms(ms))

        rows: list[FollowRow] = []
        for i in range(0, len(checked), _CONCURRENT):  # bounded: a big batch does not flood Redis
            rows += await asyncio.gather(*(one(s, t) for s, t, _ in checked[i : i + _CONCURRENT]))
        return rows

    async def unfollow_many(self, principal: Principal, pairs: Any) -> int:
        """Many unfollows ``[{"source", "target", "keep_history"?}]``; returns how many existed."""
        removed = 0
        for source, target, keep in self._pairs(principal, pairs, need_read=False):
            removed += await self.store.remove(source, target)
            if not keep:
                await self.fanout.remove_copies(source, target)
        return removed

    def _pairs(self, principal: Principal, pairs: Any, *, need_read: bool) -> list[tuple[str, str, bool]]:
        if not isinstance(pairs, list) or not pairs:
            raise Invalid("a non-empty list of {source, target}", errors=[{"loc": "", "msg": "list", "type": "list"}])
        if len(pairs) > MAX_BATCH:
            raise PayloadTooLarge(f"at most {MAX_BATCH} follows per call")
        out = []
        for i, pair in enumerate(pairs):
            source = pair.get("source") if isinstance(pair, dict) else None
            target = pair.get("target") if isinstance(pair, dict) else None
            if not isinstance(source, str) or not isinstance(target, str):
                raise Invalid(
                    f"item {i}: source and target feeds are required",
                    errors=[{"loc": f"{i}", "msg": "source and target required", "type": "missing"}],
                )
            if need_read:
                self._check_pair(principal, source, target)
            else:
                check_feed_name(target)
                self.feeds.require(principal, source, Right.WRITE)
            out.append((source, target, bool(pair.get("keep_history", False))))
        return out

    async def listing(
        self, principal: Principal, feed: str, *, side: str, offset: int, limit: int, only: Sequence[str] = ()
    ) -> list[FollowRow]:
        """Followers (``side="followers"``) or followed feeds (``"following"``), newest first."""
        self.feeds.require(principal, feed, Right.READ)
        for name in only:
            check_feed_name(name)
        rows = await self.store.listing(feed, side=side, offset=offset, limit=limit, only=only)
        if side == "followers":
            return [FollowRow(other, feed, format_ms(ms)) for other, ms in rows]
        return [FollowRow(feed, other, format_ms(ms)) for other, ms in rows]

    async def stats(
        self,
        principal: Principal,
        feed: str,
        *,
        followers_slugs: Sequence[str] = (),
        following_slugs: Sequence[str] = (),
    ) -> dict[str, Any]:
        """``{"followers": {"feed", "count"}, "following": {"feed", "count"}}`` (optionally only
        counting feeds of the given groups)."""
        self.feeds.require(principal, feed, Right.READ)
        followers, following = await self.store.counts(feed)
        if followers_slugs:
            followers = await self._count_slugs(feed, "followers", followers_slugs)
        if following_slugs:
            following = await self._count_slugs(feed, "following", following_slugs)
        return {"followers": {"feed": feed, "count": followers}, "following": {"feed": feed, "count": following}}

    async def _count_slugs(self, feed: str, side: str, slugs: Sequence[str]) -> int:
        wanted = tuple(f"{s}:" for s in slugs)
        count, offset = 0, 0
        while True:
            rows = await self.store.listing(feed, side=side, offset=offset, limit=1000)
            count += sum(name.startswith(wanted) for name, _ in rows)
            if len(rows) < 1000:
                return count
            offset += 1000


def format_ms(ms: int) -> str:
    """Milliseconds since the epoch as the server's time text."""
    return format_time(datetime.fromtimestamp(ms / 1000, UTC))


def _copy_limit(value: int | None) -> int:
    if value is None:
        return DEFAULT_COPY_LIMIT
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COPY_LIMIT:
        raise Invalid(
            f"activity_copy_limit must be 0..{MAX_COPY_LIMIT}",
            errors=[{"loc": "activity_copy_limit", "msg": f"0..{MAX_COPY_LIMIT}", "type": "range"}],
        )
    return value
