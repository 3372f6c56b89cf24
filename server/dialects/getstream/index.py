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

That costs every post a second script call, on the index's slot (it cannot join the feed's write:
another slot on a cluster). The posts of one event-loop tick share it: their entries go in one
script call (``record``), so under load the index adds one call per tick, not one per post, and
the entry of a new id is a single ``HSETNX``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

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
        self._batch: list[str] = []  # this tick's entries (flat triples), sent by ``_send``
        self._batch_done: asyncio.Future[None] | None = None

    @staticmethod
    def pair(foreign_id: str, stored_time: str) -> str:
        """The ``fids`` field of a (foreign_id, stored time) pair."""
        return f"{foreign_id}\x00{stored_time}"

    async def record(self, entries: Iterable[tuple[str, str, str, str]]) -> None:
        """Add ``(id, feed, foreign_id, stored time)`` entries (feeds accumulate per activity).

        Entries recorded in the same event-loop tick share one script call (both hashes share a
        hash tag, so one script may touch them in a cluster); each caller returns once its entries
        are stored, or gets the call's error."""
        args: list[str] = []
        for activity_id, feed, foreign_id, stored_time in entries:
            args += [activity_id, feed, self.pair(foreign_id, stored_time) if foreign_id else ""]
        if not args:
            return
        done = self._batch_done
        if done is None or len(self._batch) + len(args) > _MAX_BATCH:
            done = self._batch_done = asyncio.get_running_loop().create_future()
            self._batch = []
            asyncio.get_running_loop().call_soon(self._send, self._batch, done)
        self._batch += args
        await asyncio.shield(done)

    def _send(self, batch: list[str], done: asyncio.Future[None]) -> None:
        if self._batch_done is done:
            self._batch_done = None
        task = asyncio.ensure_future(self._calls.eval(self._record, [self.ids_key, self.fids_key], batch))
        task.add_done_callback(lambda t: _settle(done, t))

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

#: Entries (flat triples) of one shared ``record`` call at most (a script runs alone in Redis).
_MAX_BATCH = 3 * 1000


def _settle(done: asyncio.Future[None], task: asyncio.Future[Any]) -> None:
    """Pass a finished record call's outcome to its waiters."""
    if done.done():
        return
    if task.cancelled():
        done.cancel()
    elif (exc := task.exception()) is not None:
        done.set_exception(exc)
        done.exception()  # its waiters raise it; none left (all cancelled) is no reason to log it
    else:
        done.set_result(None)


#: KEYS ids, fids; ARGV triples (id, feed, fid pair or ""): append feed to each entry once.
#: A new entry (the common case: a new activity) is one HSETNX.
_RECORD = """
local function add(key, field, feed)
  if redis.call('HSETNX', key, field, feed) == 1 then return end
  local v = redis.call('HGET', key, field)
  if (' ' .. v .. ' '):find(' ' .. feed .. ' ', 1, true) == nil then
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
