"""Where GetStream's feed-less references point: activity id → feeds, (foreign_id, time) → feeds.

GetStream addresses activities app-wide (``GET activities/?ids=``, ``POST activities/`` by
``foreign_id`` + ``time``, ``POST activity/`` by id); our store keeps them per feed. Writes through
this API record the feeds holding each activity in two hashes (``Keys.getstream_index``); readers
always confirm with the feed itself; a feed found not to hold the activity any more (deleted,
trimmed) is dropped from the entry then, and a delete through this API drops it at once.
The hashes are reached through the shared command pipeline (``server.calls.Calls``, any
topology); each script touches only the two hashes, which share one hash tag (one slot).
Every ``FeedService.post`` (native API, other dialects, GetStream) records its activities through
the ``after_post`` hook, so anything written anywhere is addressable the GetStream way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from ...calls import Calls
from ...keys import Keys


class ActivityIndex:
    """The two lookup hashes of one app."""

    def __init__(self, calls: Calls, keys: Keys, app: str) -> None:
        self._calls = calls
        self.ids_key, self.fids_key = keys.getstream_index(app or "default")
        self._record = calls.script(_RECORD)
        self._forget = calls.script(_FORGET)

    @staticmethod
    def pair(foreign_id: str, stored_time: str) -> str:
        """The ``fids`` field of a (foreign_id, stored time) pair."""
        return f"{foreign_id}\x00{stored_time}"

    async def record(self, entries: Iterable[tuple[str, str, str, str]]) -> None:
        """Add ``(id, feed, foreign_id, stored time)`` entries (feeds accumulate per activity); one
        round trip (both hashes share a hash tag, so one script may touch them in a cluster)."""
        args: list[str] = []
        for activity_id, feed, foreign_id, stored_time in entries:
            args += [activity_id, feed, self.pair(foreign_id, stored_time) if foreign_id else ""]
        if not args:
            return
        await self._calls.eval(self._record, [self.ids_key, self.fids_key], args)

    async def record_bodies(self, feed: str, bodies: Sequence[bytes]) -> None:
        """``FeedService.after_post`` hook: index activities written through any API."""
        docs = [orjson.loads(b) for b in bodies]
        await self.record((d["id"], feed, d.get("foreign_id") or "", d["time"]) for d in docs)

    async def by_ids(self, ids: Sequence[str]) -> list[list[str]]:
        """The feeds recorded for each id ([] when unknown)."""
        return (await self._get(list(ids), []))[: len(ids)]

    async def by_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
        """The feeds recorded for each (foreign_id, stored time)."""
        return await self._get([], [self.pair(f, t) for f, t in pairs])

    async def forget(self, misses: Iterable[tuple[str, str, str]]) -> None:
        """Drop feeds that no longer hold an activity: ``(activity id or "", pair or "", feed)``
        each (``pair`` from ``pair()``). Entries left with no feed go; one atomic script."""
        args = [x for miss in misses for x in miss]
        if not args:
            return
        await self._calls.eval(self._forget, [self.ids_key, self.fids_key], args)

    async def _get(self, ids: list[str], pairs: list[str]) -> list[list[str]]:
        commands: list[tuple[str, ...]] = []
        if ids:
            commands.append((self.ids_key, "HMGET", self.ids_key, *ids))
        if pairs:
            commands.append((self.fids_key, "HMGET", self.fids_key, *pairs))
        results = await self._calls.many(commands)
        out: list[list[str]] = []
        for values in results:
            out += [v.decode().split(" ") if v else [] for v in values]
        return out


#: KEYS ids, fids; ARGV triples (id or "", pair or "", feed): remove feed from those entries.
_FORGET = """
local function drop(key, field, feed)
  local v = redis.call('HGET', key, field)
  if not v then return end
  local rest = {}
  for f in v:gmatch('%S+') do if f ~= feed then rest[#rest + 1] = f end end
  if #rest == 0 then redis.call('HDEL', key, field) else redis.call('HSET', key, field, table.concat(rest, ' ')) end
end
for i = 1, #ARGV, 3 do
  if ARGV[i] ~= '' then drop(KEYS[1], ARGV[i], ARGV[i + 2]) end
  if ARGV[i + 1] ~= '' then drop(KEYS[2], ARGV[i + 1], ARGV[i + 2]) end
end
return 1
"""

#: KEYS ids, fids; ARGV triples (id, feed, fid pair or ""): append feed to each entry once.
_RECORD = """
local function add(key, field, feed)
  local v = redis.call('HGET', key, field)
  if not v then
    redis.call('HSET', key, field, feed)
  elseif (' ' .. v .. ' '):find(' ' .. feed .. ' ', 1, true) == nil then
    redis.call('HSET', key, field, v .. ' ' .. feed)
  end
end
for i = 1, #ARGV, 3 do
  add(KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] ~= '' then add(KEYS[2], ARGV[i + 2], ARGV[i + 1]) end
end
return 1
"""


__all__ = ["ActivityIndex"]
