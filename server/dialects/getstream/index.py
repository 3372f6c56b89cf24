"""Where GetStream's feed-less references point: activity id → feeds, (foreign_id, time) → feeds.

GetStream addresses activities app-wide (``GET activities/?ids=``, ``POST activities/`` by
``foreign_id`` + ``time``, ``POST activity/`` by id); our store keeps them per feed. Writes through
this API record the feeds holding each activity in two hashes (``Keys.getstream_index``); readers
always confirm with the feed itself, so an entry left behind by a native delete only costs a miss
(and is dropped when met). Activities written through the native API are not indexed: they are
found through their feeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redis.asyncio import Redis

from ...errors import Unavailable
from ...keys import Keys


class ActivityIndex:
    """The two lookup hashes of one app."""

    def __init__(self, redis: Redis, keys: Keys, app: str, timeout: float) -> None:
        self._redis = redis
        self.ids_key, self.fids_key = keys.getstream_index(app or "default")
        self._timeout = timeout

    @staticmethod
    def pair(foreign_id: str, stored_time: str) -> str:
        """The ``fids`` field of a (foreign_id, stored time) pair."""
        return f"{foreign_id}\x00{stored_time}"

    async def record(self, entries: Iterable[tuple[str, str, str, str]]) -> None:
        """Add ``(id, feed, foreign_id, stored time)`` entries (feeds accumulate per activity)."""
        entries = list(entries)
        if not entries:
            return
        ids = sorted({e[0] for e in entries})
        pairs = sorted({self.pair(e[2], e[3]) for e in entries if e[2]})
        known = await self._get(ids, pairs)
        by_id = dict(zip(ids, known[: len(ids)], strict=True))
        by_pair = dict(zip(pairs, known[len(ids) :], strict=True))
        for activity_id, feed, foreign_id, stored_time in entries:
            by_id[activity_id] = _add(by_id[activity_id], feed)
            if foreign_id:
                key = self.pair(foreign_id, stored_time)
                by_pair[key] = _add(by_pair[key], feed)
        mapping_ids = {k: " ".join(v) for k, v in by_id.items()}
        mapping_pairs = {k: " ".join(v) for k, v in by_pair.items()}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.ids_key, mapping=mapping_ids)  # type: ignore[arg-type]
                if mapping_pairs:
                    pipe.hset(self.fids_key, mapping=mapping_pairs)  # type: ignore[arg-type]
                await pipe.execute()
        except Exception as exc:  # redis errors
            raise Unavailable("Redis is unavailable", retry_after=1.0) from exc

    async def by_ids(self, ids: Sequence[str]) -> list[list[str]]:
        """The feeds recorded for each id ([] when unknown)."""
        return (await self._get(list(ids), []))[: len(ids)]

    async def by_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
        """The feeds recorded for each (foreign_id, stored time)."""
        return await self._get([], [self.pair(f, t) for f, t in pairs])

    async def forget(self, activity_id: str, feed: str, foreign_id: str = "", stored_time: str = "") -> None:
        """Drop ``feed`` from an activity's entries (the whole entry when no feed is left)."""
        pairs = [self.pair(foreign_id, stored_time)] if foreign_id else []
        known = await self._get([activity_id], pairs)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, field, feeds in (
                    (self.ids_key, activity_id, known[0]),
                    *((self.fids_key, p, f) for p, f in zip(pairs, known[1:], strict=True)),
                ):
                    rest = [f for f in feeds if f != feed]
                    if rest:
                        pipe.hset(key, field, " ".join(rest))
                    else:
                        pipe.hdel(key, field)
                await pipe.execute()
        except Exception as exc:
            raise Unavailable("Redis is unavailable", retry_after=1.0) from exc

    async def _get(self, ids: list[str], pairs: list[str]) -> list[list[str]]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if ids:
                    pipe.hmget(self.ids_key, ids)
                if pairs:
                    pipe.hmget(self.fids_key, pairs)
                results = await pipe.execute() if ids or pairs else []
        except Exception as exc:
            raise Unavailable("Redis is unavailable", retry_after=1.0) from exc
        out: list[list[str]] = []
        for values in results:
            out += [v.decode().split(" ") if v else [] for v in values]
        return out


def _add(feeds: list[str], feed: str) -> list[str]:
    return feeds if feed in feeds else [*feeds, feed]


__all__ = ["ActivityIndex"]
