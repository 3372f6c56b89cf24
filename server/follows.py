"""Follows and their durable fan-out (SPEC §12).

``feed A follows feed B``: B's latest activities are copied into A, and every later change of B
(create, update, delete) reaches A, in B's seq order. The copies carry ``origin`` (B) and
``via: "follow"``, keep the original's id (a replay overwrites, never duplicates) and are shown
only to readers who could see the activity in B (``acl.Viewer.can_see``).

Durability, without any cross-slot script:

1. A write to B is one Lua script on B's slot that already appends the change to B's change log
   (``keys`` ``log``). That log *is* the fan-out work: a change can never be stored without it.
2. The write script also answers whether B has followers (B's ``followers`` set is in B's slot);
   when it has, the process adds a job ``{feed: B}`` to the job stream ``{fanout}:jobs`` (its own
   slot). Jobs are wake-ups, not the data; writes to feeds nobody follows send nothing more.
3. Workers (every process runs some) read jobs with ``XREADGROUP`` (group ``fanout``). A worker
   takes B's lease (``fanout_take.lua``, B's slot), reads B's changes after B's fan-out cursor from
   the log, copies them into each follower feed (one write script per follower, on the follower's
   slot, in seq order), then advances the cursor (``fanout_done.lua``), which also releases the
   lease only if no newer change arrived. Jobs are acknowledged (``XACK``) per batch once done.
4. A worker that dies leaves its jobs pending and its lease expiring: ``XAUTOCLAIM`` hands the jobs
   to another worker after ``claim_idle_seconds``, which resumes from the cursor. Replaying copies
   already made is harmless: a copy keyed by the origin's id is overwritten in order.
5. A crash between a write's acknowledgement and its job (step 2) leaves B's cursor behind its seq;
   the sweep (at start, then every ``sweep_seconds``) compares cursor and seq of every followed
   feed (``{fanout}:sources``) and enqueues a job for those behind.
6. An unfollow racing a round: a copy carries its origin as a guard (``WriteItem.follows``) and the
   write script on the follower's slot writes it only while the follower's ``following`` set still
   holds the origin. Unfollow removes that edge first and the copies after, so a round that read
   the follower list before the unfollow cannot leave copies behind it.

Memory is bounded: jobs carry only a feed name and the stream is capped (``MAXLEN ~``), a round
copies at most ``events_per_batch`` changes to ``followers_per_chunk`` followers at a time, and the
copies go through the fan-out's own store (its own connections), so a feed with 10,000 followers
never queues behind, or in front of, anyone's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis import exceptions as redis_errors

from .acl import FOLLOW_MARK, actor_id, follow_origin
from .backends.base import Pipeline
from .calls import Calls, pairs, text
from .keys import Keys
from .models import dumps, parse_time, time_ms, visibility
from .store import FeedStore, WriteItem

log = logging.getLogger("feedserver.follows")

T = TypeVar("T")

#: Consumer group of the fan-out workers on the job stream.
GROUP = "fanout"
#: Body fields of an original that a copy does not take over (the copy gets its own).
_NOT_COPIED = frozenset({"id", "seq", "feed", "created_at", "updated_at", "version", "to", "origin", FOLLOW_MARK})
#: The change events that reach follower feeds.
_COPIED_EVENTS = frozenset({"created", "updated", "deleted"})
#: A copy passes the in-Redis history filter and is judged in Python by its origin's rule.
_COPY_AUDIENCE = ({"type": "public"},)


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("lua", name).read_text()


def copy_item(origin: str, target: str, doc: dict[str, Any], stamp: str) -> WriteItem:
    """The follow copy of ``doc`` (from ``origin``) for ``target``: same id, content and audience.

    The copy is not indexed by foreign_id in the follower feed (two followed feeds may use the same
    foreign_id and time); its body keeps the field.
    """
    body: dict[str, Any] = {"feed": target}
    body.update((k, v) for k, v in doc.items() if k not in _NOT_COPIED)
    body["origin"] = origin
    body[FOLLOW_MARK] = "follow"
    body["updated_at"] = stamp
    actor = actor_id(doc) or ""
    return WriteItem(
        id=doc["id"],
        client_id=True,
        foreign_id=None,
        time=doc["time"],
        score=time_ms(parse_time(doc["time"])),
        actor=actor,
        may_override=True,
        created_at=doc.get("created_at") or stamp,
        rest=dumps(body),
        vis=visibility(actor, str(doc.get("verb", "")), _COPY_AUDIENCE),
        follows=origin,
    )


@dataclass(frozen=True, slots=True)
class Follow:
    """One follow relation as listed: ``feed_id`` follows ``target_id`` since ``created_at`` (ms)."""

    feed_id: str
    target_id: str
    created_ms: int


class FollowStore:
    """Follow relations, the fan-out job stream and the fan-out scripts, over the command pipeline."""

    def __init__(self, pipeline: Pipeline, keys: Keys, *, timeout: float, max_jobs: int) -> None:
        self.calls = Calls(pipeline, timeout)
        self.keys = keys
        self._max_jobs = max_jobs
        self._follow_add = self.calls.script(_script("follow_add.lua"))
        self._take = self.calls.script(_script("fanout_take.lua"))
        self._done = self.calls.script(_script("fanout_done.lua"))
        self._origin_ids = self.calls.script(_script("origin_ids.lua"))
        self._renew = self.calls.script(_script("fanout_renew.lua"))
        self.jobs, self.sources = keys.fanout()

    # -- relations -----------------------------------------------------------------------------

    async def add(self, follower: str, target: str, ms: int) -> bool:
        """Record ``follower`` follows ``target`` (single-slot calls); True if it is new."""
        followers, _, fo, _ = self.keys.follows(target)
        following = self.keys.follows(follower)[1]
        meta = self.keys.feed(target).meta
        added, _ = await self.calls.eval(self._follow_add, [meta, followers, fo], [follower, ms])
        await self.calls.many(
            [
                (following, "ZADD", following, "NX", ms, target),
                (self.sources, "ZADD", self.sources, "NX", ms, target),
            ]
        )
        return bool(added)

    async def remove(self, follower: str, target: str) -> bool:
        """Forget that ``follower`` follows ``target``; True if it did."""
        followers = self.keys.follows(target)[0]
        following = self.keys.follows(follower)[1]
        removed, _ = await self.calls.many(
            [(followers, "ZREM", followers, follower), (following, "ZREM", following, target)]
        )
        return bool(removed)

    async def listing(
        self, feed: str, *, side: str, offset: int, limit: int, only: Sequence[str] = ()
    ) -> list[tuple[str, int]]:
        """Followers (``side="followers"``) or followed feeds (``"following"``) of ``feed``, newest
        first, as (feed, ms); ``only`` restricts to those feeds."""
        key = self.keys.follows(feed)[0 if side == "followers" else 1]
        if only:
            scores = await self.calls.cmd(key, "ZMSCORE", key, *only)
            found = [(f, int(float(sc))) for f, sc in zip(only, scores, strict=True) if sc is not None]
            found.sort(key=lambda p: (-p[1], p[0]))
            return found[offset : offset + limit]
        rows = await self.calls.cmd(key, "ZREVRANGE", key, offset, offset + limit - 1, "WITHSCORES")
        return [(text(f), int(float(sc))) for f, sc in pairs(rows)]

    async def counts(self, feed: str) -> tuple[int, int]:
        """(followers, following) of ``feed``."""
        followers, following, _, _ = self.keys.follows(feed)
        a, b = await self.calls.many([(followers, "ZCARD", followers), (following, "ZCARD", following)])
        return int(a), int(b)

    async def follower_scan(self, feed: str, cursor: int, count: int) -> tuple[int, list[str]]:
        """One ``ZSCAN`` step over ``feed``'s followers: (next cursor, 0 at the end; followers).

        ZSCAN returns every follower present for the whole scan, whatever is added or removed
        meanwhile (rank paging would skip some after a removal); a follower returned twice gets the
        same changes twice, in order, which changes nothing.
        """
        key = self.keys.follows(feed)[0]
        nxt, rows = await self.calls.cmd(key, "ZSCAN", key, cursor, "COUNT", count)
        return int(nxt), [text(m) for m, _ in pairs(rows)]

    async def latest(self, feed: str, limit: int) -> list[bytes]:
        """The newest ``limit`` activity bodies of ``feed``, newest first."""
        k = self.keys.feed(feed)
        ids = await self.calls.cmd(k.idx, "ZREVRANGE", k.idx, 0, limit - 1)
        if not ids:
            return []
        bodies = await self.calls.cmd(k.acts, "HMGET", k.acts, *ids)
        return [b for b in bodies if b is not None]

    async def copies_from(self, feed: str, origin: str) -> list[str]:
        """Ids of the follow copies in ``feed`` that came from ``origin``."""
        acts = self.keys.feed(feed).acts
        needle = f'"origin":{orjson.dumps(origin).decode()}'
        ids = await self.calls.eval(self._origin_ids, [acts], [needle])
        return [text(i) for i in ids]

    # -- jobs ----------------------------------------------------------------------------------

    async def enqueue(self, feeds: Sequence[str]) -> None:
        """Add one fan-out job per feed to the job stream (capped: the sweep repairs trimmed jobs)."""
        j = self.jobs
        await self.calls.many([(j, "XADD", j, "MAXLEN", "~", self._max_jobs, "*", "feed", f) for f in feeds])

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing; jobs already there are kept."""
        try:
            await self.calls.cmd(self.jobs, "XGROUP", "CREATE", self.jobs, GROUP, "0", "MKSTREAM")
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_jobs(self, consumer: str, count: int) -> list[tuple[Any, str | None]]:
        """New jobs for ``consumer`` (``XREADGROUP``, not blocking: lanes are shared)."""
        j = self.jobs
        reply = await self.calls.cmd(j, "XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, "STREAMS", j, ">")
        return [_job(entry) for _, entries in reply or () for entry in entries]

    async def claim_jobs(self, consumer: str, idle_ms: int, start: Any, count: int) -> tuple[Any, list[Any]]:
        """``XAUTOCLAIM``: (next start, jobs idle longer than ``idle_ms`` now owned by ``consumer``)."""
        j = self.jobs
        reply = await self.calls.cmd(j, "XAUTOCLAIM", j, GROUP, consumer, idle_ms, start, "COUNT", count)
        return reply[0], [_job(entry) for entry in reply[1]]

    async def ack(self, ids: Sequence[Any]) -> None:
        """``XACK`` jobs done."""
        if ids:
            await self.calls.cmd(self.jobs, "XACK", self.jobs, GROUP, *ids)

    async def take(self, feed: str, token: str, lease_ms: int, max_events: int) -> list[Any]:
        """``fanout_take.lua`` on ``feed``."""
        k = self.keys.feed(feed)
        _, _, fo, lease = self.keys.follows(feed)
        return list(await self.calls.eval(self._take, [k.meta, k.log, fo, lease], [token, lease_ms, max_events]))

    async def done(self, feed: str, token: str, cursor: int, lease_ms: int) -> str:
        """``fanout_done.lua`` on ``feed``: 'lost', 'more' or 'idle'."""
        meta = self.keys.feed(feed).meta
        _, _, fo, lease = self.keys.follows(feed)
        return text(await self.calls.eval(self._done, [meta, fo, lease], [token, cursor, lease_ms]))

    async def renew(self, feed: str, token: str, lease_ms: int, position: str) -> bool:
        """``fanout_renew.lua``: keep the lease and record the round's progress; False if lost."""
        _, _, fo, lease = self.keys.follows(feed)
        return bool(await self.calls.eval(self._renew, [lease, fo], [token, lease_ms, position]))

    async def position(self, feed: str) -> str:
        """The recorded progress of ``feed``'s current round (``"<last>:<scan cursor>"`` or "")."""
        fo = self.keys.follows(feed)[2]
        return text(await self.calls.cmd(fo, "HGET", fo, "pos") or b"")

    async def behind(self, feeds: Sequence[str]) -> list[int]:
        """How many changes each feed's fan-out cursor is behind its seq."""
        commands: list[tuple[Any, ...]] = []
        for feed in feeds:
            meta, fo = self.keys.feed(feed).meta, self.keys.follows(feed)[2]
            commands += [(meta, "HGET", meta, "seq"), (fo, "HGET", fo, "cursor")]
        replies = await self.calls.many(commands)
        out = []
        for seq, cursor in pairs(replies):
            out.append(max(0, int(seq or 0) - int(cursor)) if cursor is not None else 0)
        return out

    async def source_page(self, start: int, count: int) -> list[str]:
        """A page of the feeds that have (or had) followers."""
        rows = await self.calls.cmd(self.sources, "ZRANGE", self.sources, start, start + count - 1)
        return [text(r) for r in rows]

    async def backlog(self) -> tuple[int, int]:
        """(jobs not yet read by the group, jobs read but not acknowledged)."""
        try:
            groups = await self.calls.cmd(self.jobs, "XINFO", "GROUPS", self.jobs)
        except redis_errors.ResponseError:
            return 0, 0
        for group in groups:
            info = {text(k): v for k, v in pairs(group)}
            if text(info.get("name")) == GROUP:
                return int(info.get("lag") or 0), int(info.get("pending") or 0)
        return 0, 0


def _job(entry: Any) -> tuple[Any, str | None]:
    """(entry id, feed) of a job stream entry (feed None for an entry deleted meanwhile)."""
    entry_id, fields = entry[0], entry[1]
    info = {text(k): text(v) for k, v in pairs(fields or [])}
    return entry_id, info.get("feed")


class FanoutMetrics:
    """The fan-out's Prometheus metrics (in the app's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.copies = Counter("feed_fanout_copies", "Changes copied into follower feeds", registry=r)
        self.jobs = Counter("feed_fanout_jobs", "Fan-out jobs handled", ["how"], registry=r)
        self.lag_jobs = Gauge(
            "feed_fanout_lag_jobs",
            "Fan-out jobs waiting: not yet read plus read but not acknowledged",
            registry=r,
            multiprocess_mode="max",
        )
        self.behind = Gauge(
            "feed_fanout_behind_changes",
            "Changes of followed feeds not yet copied to their followers (at the last sweep)",
            registry=r,
            multiprocess_mode="max",
        )


class Fanout:
    """Enqueues fan-out jobs after writes and runs this process's fan-out workers."""

    def __init__(
        self,
        follows: FollowStore,
        copies: FeedStore,
        metrics: FanoutMetrics,
        *,
        events_per_batch: int,
        followers_per_chunk: int,
        jobs_per_read: int,
        lease_seconds: float,
        claim_idle_seconds: float,
        sweep_seconds: float,
        poll_seconds: float = 0.05,
        run_workers: bool = True,
    ) -> None:
        self.follows = follows
        self.copies = copies
        self.metrics = metrics
        self.events_per_batch = events_per_batch
        self.followers_per_chunk = followers_per_chunk
        self.jobs_per_read = jobs_per_read
        self.lease_ms = int(lease_seconds * 1000)
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self.sweep_seconds = sweep_seconds
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self.run_workers = run_workers
        self.consumer = f"{uuid.uuid4().hex[:12]}"
        self._changed: set[str] = set()
        self._flush_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- after writes --------------------------------------------------------------------------

    def changed(self, feed: str, followed: bool = True) -> None:
        """A change was written to ``feed`` (``FeedStore.on_change``); if it has followers (the
        write script said so), enqueue a job, batched per tick. Runs once Redis acknowledged the
        write; a crash before the job is queued is repaired by the sweep."""
        if not followed:
            return
        self._changed.add(feed)
        if self._flush_task is None:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._changed:
                feeds, self._changed = sorted(self._changed), set()
                try:
                    await self.follows.enqueue(feeds)
                    self._wake.set()
                except Exception as exc:  # the sweep will find these feeds behind
                    log.warning("could not queue fan-out jobs for %d feeds: %s", len(feeds), exc)
        finally:
            self._flush_task = None

    # -- workers -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reader, claimer and sweeper tasks (when this process runs workers)."""
        if not self.run_workers:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._forever(self._read_jobs, 0.0)),
            loop.create_task(self._forever(self._claim_jobs, max(0.05, self.claim_idle_ms / 2000))),
            loop.create_task(self._forever(self._sweep, self.sweep_seconds, first=True)),
        ]

    async def close(self) -> None:
        """Stop the workers; unfinished jobs stay pending for another worker."""
        for task in [*self._tasks, *([self._flush_task] if self._flush_task else [])]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _forever(self, step: Callable[[], Awaitable[None]], pause: float, *, first: bool = False) -> None:
        """Run ``step`` again and again (``pause`` seconds apart), surviving Redis trouble."""
        group_ready = False
        while True:
            try:
                if not group_ready:
                    await self.follows.ensure_group()
                    group_ready = True
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fan-out worker: %s", exc)
                if "NOGROUP" in str(exc):  # the stream was deleted (a flush): create it again
                    group_ready = False
                await asyncio.sleep(1.0)
            if pause:
                await asyncio.sleep(pause)

    async def _read_jobs(self) -> None:
        jobs = await self.follows.read_jobs(self.consumer, self.jobs_per_read)
        if jobs:
            await self._handle(jobs, "new")
            return
        self._wake.clear()  # idle: poll again soon, or at once when this process queues a job
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _claim_jobs(self) -> None:
        start: Any = "0-0"
        while True:
            start, jobs = await self.follows.claim_jobs(self.consumer, self.claim_idle_ms, start, self.jobs_per_read)
            if jobs:
                await self._handle(jobs, "claimed")
            if not jobs or text(start) == "0-0":
                return

    async def _handle(self, jobs: Sequence[tuple[Any, str | None]], how: str) -> None:
        """Do the jobs of one read (each followed feed once), then acknowledge the ones done."""
        by_feed: dict[str, list[Any]] = {}
        gone = []
        for entry_id, feed in jobs:
            if feed is None:  # deleted from the stream meanwhile
                gone.append(entry_id)
            else:
                by_feed.setdefault(feed, []).append(entry_id)
        results = await asyncio.gather(*(self.drain(feed) for feed in by_feed), return_exceptions=True)
        done = gone
        for (feed, ids), result in zip(by_feed.items(), results, strict=True):
            if isinstance(result, BaseException):
                log.warning("fan-out of %s failed (the job will be retried): %s", feed, result)
                continue
            if result == "busy" and how == "claimed":
                continue  # its holder may have died: keep the job pending until the lease is free
            done.extend(ids)
        await self.follows.ack(done)
        self.metrics.jobs.labels(how).inc(len(done))

    async def _sweep(self) -> None:
        """Queue a job for every followed feed whose fan-out is behind its changes."""
        start, total = 0, 0
        while True:
            feeds = await self.follows.source_page(start, 1000)
            if not feeds:
                break
            behind = await self.follows.behind(feeds)
            total += sum(behind)
            late = [f for f, n in zip(feeds, behind, strict=True) if n]
            if late:
                await self.follows.enqueue(late)
            start += len(feeds)
        self.metrics.behind.set(total)
        await self.update_lag()

    async def update_lag(self) -> int:
        """Refresh the lag gauge; returns the jobs waiting."""
        lag, pending = await self.follows.backlog()
        self.metrics.lag_jobs.set(lag + pending)
        return lag + pending

    # -- one followed feed ---------------------------------------------------------------------

    async def drain(self, feed: str) -> str:
        """Copy every change of ``feed`` not yet copied to its followers; "done", or "busy" when
        another worker holds the feed (then that worker does it, see ``fanout_done.lua``)."""
        token = f"{self.consumer}:{uuid.uuid4().hex[:8]}"
        while True:
            reply = await self.follows.take(feed, token, self.lease_ms, self.events_per_batch)
            kind = text(reply[0])
            if kind == "busy":
                return "busy"
            if kind == "idle":
                return "done"
            last = int(reply[2])
            if kind == "gap":  # more changes than the change log keeps: copy the feed's newest state
                if not await self._resync(feed, token, last):
                    return "busy"
            else:
                events = [orjson.loads(raw) for raw in reply[3:]]
                if not await self._deliver(feed, events, token, last):
                    return "busy"
            state = await self.follows.done(feed, token, last, self.lease_ms)
            if state != "more":
                return "done"

    async def _deliver(self, feed: str, events: list[dict[str, Any]], token: str = "", last: int = 0) -> bool:
        """Apply ``events`` (oldest first) to every follower of ``feed``, each follower in order.

        After each chunk of followers the lease is renewed and the position recorded, so a retry of
        the same round resumes after the last finished chunk. False when the lease was lost."""
        ops = self._operations(feed, events)
        if not ops:
            return True
        cursor = 0
        saved = await self.follows.position(feed) if token else ""
        if saved.startswith(f"{last}:"):
            cursor = int(saved.split(":", 1)[1])
            if cursor == 0:  # this round already reached every follower
                return True
        while True:
            cursor, followers = await self.follows.follower_scan(feed, cursor, self.followers_per_chunk)
            if followers:
                results = await asyncio.gather(*(self._apply(f, feed, ops) for f in followers), return_exceptions=True)
                failed = [r for r in results if isinstance(r, BaseException)]
                if failed:
                    raise failed[0]
                self.metrics.copies.inc(len(followers) * sum(len(items) for _, items in ops))
            if token and not await self.follows.renew(feed, token, self.lease_ms, f"{last}:{cursor}"):
                return False
            if cursor == 0:
                return True

    @staticmethod
    def _operations(feed: str, events: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
        """Runs of writes and deletes, in order. Follow copies in ``feed`` are not passed on."""
        ops: list[tuple[str, list[Any]]] = []
        for event in events:
            activity = event.get("activity") or {}
            if event.get("event") not in _COPIED_EVENTS or follow_origin(activity) is not None or "id" not in activity:
                continue  # reactions stay with their activity's feed; copies are not passed on
            kind = "delete" if event.get("event") == "deleted" else "write"
            item: Any = activity["id"] if kind == "delete" else activity
            if ops and ops[-1][0] == kind:
                ops[-1][1].append(item)
            else:
                ops.append((kind, [item]))
        return ops

    async def _apply(self, follower: str, origin: str, ops: list[tuple[str, list[Any]]]) -> None:
        stamp = _stamp()
        for kind, items in ops:
            if kind == "write":
                await self.copies.write(follower, [copy_item(origin, follower, doc, stamp) for doc in items])
            else:
                await self.copies.delete(follower, items, actor="", may_override=True)

    async def _resync(self, feed: str, token: str, last: int) -> bool:
        """Bring every follower up to ``feed``'s newest activities (after a log gap)."""
        bodies = await self.follows.latest(feed, 100)
        docs = [orjson.loads(b) for b in reversed(bodies)]
        return await self._deliver(feed, [{"event": "created", "activity": d} for d in docs], token, last)

    async def snapshot(self, follower: str, target: str, limit: int) -> int:
        """Copy ``target``'s newest ``limit`` activities into ``follower`` (the start of a follow)."""
        if limit <= 0:
            return 0
        bodies = await self.follows.latest(target, limit)
        docs = [orjson.loads(b) for b in reversed(bodies)]
        docs = [d for d in docs if follow_origin(d) is None]
        if not docs:
            return 0
        stamp = _stamp()
        for i in range(0, len(docs), 100):
            await self.copies.write(follower, [copy_item(target, follower, d, stamp) for d in docs[i : i + 100]])
        return len(docs)

    async def remove_copies(self, follower: str, target: str) -> int:
        """Delete ``follower``'s copies of ``target``'s activities; how many."""
        ids = await self.follows.copies_from(follower, target)
        removed = 0
        for i in range(0, len(ids), 100):
            results = await self.copies.delete(follower, ids[i : i + 100], actor="", may_override=True)
            removed += sum(r.status == "ok" for r in results)
        return removed


def _stamp() -> str:
    from .models import format_time, now

    return format_time(now())


def now_ms() -> int:
    """Wall-clock milliseconds (follow times)."""
    return int(time.time() * 1000)
