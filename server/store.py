"""FeedStore: every read and write of feeds in Redis.

Each write is one Lua script (``lua/*.lua``) that takes the next ``seq``, stores the body, updates
the time and foreign-id indexes, appends the change event to the feed's log, trims, and publishes
the event — so history and live pushes can never disagree. Reads are scripts too, so a page or a
resume cursor is one consistent snapshot.

Redis failures and stalls become ``Unavailable`` (503) within ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from redis import exceptions as redis_errors

from .backends.pipeline import ReplicaAcksMissing
from .errors import Conflict, FeedError, Forbidden, Invalid, Unavailable
from .keys import Keys

if TYPE_CHECKING:
    from .backends.base import Pipeline

T = TypeVar("T")

#: Error replies that mean "Redis cannot serve this right now", not "this request is wrong".
_TRANSIENT_REPLIES = ("BUSY", "OOM", "READONLY", "MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS")
#: The same, as the exception classes redis-py parses some of them into (their text loses the
#: prefix): redirects that could not be followed, slots being moved, a cluster or shard down, a
#: demoted master, a script cache that could not be refilled.
_TRANSIENT_ERRORS = (
    redis_errors.AskError,  # and MovedError
    redis_errors.TryAgainError,
    redis_errors.ClusterError,  # ClusterDownError, MasterDownError
    redis_errors.ReadOnlyError,
    redis_errors.NoScriptError,
)

#: Seconds a client is told to wait (``Retry-After``) when Redis is unavailable.
RETRY_AFTER = 1.0


def load_script(name: str) -> str:
    """``server/lua/<name>`` with the shared prelude (``_common.lua``) in front."""
    lua = resources.files(__package__).joinpath("lua")
    return lua.joinpath("_common.lua").read_text() + "\n" + lua.joinpath(name).read_text()


#: Epoch candidates need uniqueness, not secrecy: a PRNG seeded from the OS is far cheaper than a
#: system call per write (a candidate is only used when a feed's history starts).
_EPOCHS = random.Random(secrets.randbits(128))


def new_epoch() -> str:
    """A fresh random epoch (the identity of one feed history)."""
    return f"{_EPOCHS.getrandbits(64):016x}"


@dataclass(frozen=True, slots=True)
class WriteItem:
    """One activity for the write script; ``rest`` is the encoded body minus script-owned fields."""

    id: str
    client_id: bool
    foreign_id: str | None
    time: str
    score: int
    actor: str
    may_override: bool
    created_at: str
    rest: bytes
    vis: str
    #: A follow copy: the origin feed the target feed must still follow for the copy to be written
    #: (checked inside the write script; otherwise the item is skipped). "" for every other write.
    follows: str = ""

    def args(self) -> tuple[bytes, bytes]:
        """This item's two ``ARGV`` entries: its metadata as one JSON array (few arguments are
        cheap to pack and send), and its body."""
        meta = [
            self.id,
            self.client_id,
            self.foreign_id or "",
            self.time,
            self.score,
            self.actor,
            self.may_override,
            self.created_at,
            self.vis,
        ]
        if self.follows:
            meta.append(self.follows)
        return orjson.dumps(meta), self.rest


@dataclass(frozen=True, slots=True)
class ReplaceItem:
    """One replacement for the replace script: the target and its new body."""

    id: str  # "" to find the target by (lookup_fid, lookup_time)
    lookup_fid: str
    lookup_time: str
    expected_version: int | None
    actor: str
    may_override: bool
    foreign_id: str | None
    time: str
    score: int
    rest: bytes
    vis: str

    def args(self) -> tuple[Any, ...]:
        """This item's 11 ``ARGV`` entries."""
        return (
            self.id,
            self.lookup_fid,
            self.lookup_time,
            "" if self.expected_version is None else self.expected_version,
            self.actor,
            "1" if self.may_override else "",
            self.foreign_id or "",
            self.time,
            self.score,
            self.rest,
            self.vis,
        )


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The outcome of one item of a replace/delete script.

    ``status`` is ``ok`` (``body`` is the new body, or the deleted one), ``not_found``, ``stale``
    (``version`` is the stored version), ``forbidden`` or ``conflict``.
    """

    status: str
    body: bytes | None = None
    version: int | None = None


@dataclass(frozen=True, slots=True)
class PageResult:
    """What a page read found: matching ids and bodies in walking order, the last activity it
    examined, and whether it reached the end of the window."""

    ids: list[str]
    bodies: list[bytes]
    last_examined: str | None
    exhausted: bool
    hidden: int = 0  # examined activities matching the filters that the reader may not see


@dataclass(frozen=True, slots=True)
class CursorResult:
    """A feed's position, and the change events after a resume cursor."""

    epoch: str
    seq: int
    recovered: bool
    events: list[bytes]


class FeedStore:
    """Reads and writes feeds; one instance per process, built in ``app.py``."""

    def __init__(
        self,
        pipeline: Pipeline,
        keys: Keys,
        *,
        max_feed_length: int,
        resume_window: int,
        retention_days: float = 0,
        timeout: float = 2.0,
        min_replica_acks: int = 0,
    ) -> None:
        # The command path for this topology (backends.pipeline.Batcher for one node or Sentinel,
        # backends.cluster.ClusterPipeline on a cluster): the store itself does not know which.
        self.keys = keys
        self._max_len = max_feed_length
        self._window = resume_window
        self._retention_ms = int(retention_days * 86_400_000)
        self._timeout = timeout
        self._acks = min_replica_acks  # writes wait (WAIT) for this many replicas; 0: don't
        self._batcher = pipeline
        self._merging: dict[str, _MergedWrite] = {}
        self._write = self._batcher.script(load_script("write.lua"))
        self._cursor = self._batcher.script(load_script("cursor.lua"))
        self._read = self._batcher.script(load_script("read.lua"))
        self._replace = self._batcher.script(load_script("replace.lua"))
        self._delete = self._batcher.script(load_script("delete.lua"))
        self._find = self._batcher.script(load_script("find.lua"))
        self._marks = self._batcher.script(load_script("marks.lua"))
        #: Called with (feed, whether it has followers) after each write script that ran on it: the
        #: follow fan-out's wake-up (only when followed) and the notification feeds' live group
        #: counts. The write script itself says whether the feed has followers, so writes to feeds
        #: nobody follows cost no Redis command more.
        self.on_change: Callable[[str, bool], None] | None = None

    async def _run(self, sha: str, keys: Sequence[str], args: Sequence[Any], *, acks: int = 0) -> Any:
        """Run a script in a shared pipeline (the batcher bounds its time); Redis trouble becomes 503.

        ``acks``: a write that must reach that many replicas (``[redis] min_replica_acks``)."""
        return await self._call(lambda: self._batcher.evalsha(sha, keys, args, acks=acks), bounded=True)

    async def _call(self, op: Callable[[], Awaitable[T]], *, bounded: bool = False) -> T:
        """Run one Redis operation within ``timeout`` (``bounded``: ``op`` enforces it itself);
        Redis trouble becomes 503."""
        try:
            if bounded:
                return await op()
            async with asyncio.timeout(self._timeout):
                return await op()
        except TimeoutError:
            raise Unavailable("Redis did not answer in time", retry_after=RETRY_AFTER) from None
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise Unavailable(f"Redis is unavailable: {type(exc).__name__}", retry_after=RETRY_AFTER) from None
        except ReplicaAcksMissing as exc:
            raise Unavailable(
                f"the write was not confirmed by enough replicas ({exc}); it may still exist",
                retry_after=RETRY_AFTER,
            ) from None
        except _TRANSIENT_ERRORS as exc:
            raise Unavailable(f"Redis refused: {type(exc).__name__} {str(exc)[:80]}", retry_after=RETRY_AFTER) from None
        except redis_errors.ResponseError as exc:
            if str(exc).startswith(_TRANSIENT_REPLIES):
                raise Unavailable(f"Redis refused: {str(exc)[:80]}", retry_after=RETRY_AFTER) from None
            raise

    def _cutoff(self) -> int:
        return int(time.time() * 1000) - self._retention_ms if self._retention_ms else 0

    async def write(self, feed: str, items: Sequence[WriteItem]) -> list[bytes]:
        """Add (or upsert) ``items`` in ``feed`` atomically; returns the stored bodies in order.

        Writes to one feed issued in the same event-loop tick (concurrent requests, pipelined
        publishes) share one script call, in issue order: as if run one after the other, for a
        fraction of the cost. The script is all-or-nothing, so when a shared call is refused (one
        request may not overwrite an activity, or clashes) nothing was written and each request
        is run again on its own, to get its own answer.
        """
        merge = self._merging.get(feed)
        if merge is None or merge.size + len(items) > _MAX_MERGED_ITEMS:
            merge = self._merging[feed] = _MergedWrite()
            asyncio.get_running_loop().call_soon(self._send_merged, feed, merge)
        future: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        merge.groups.append((items, future))
        merge.size += len(items)
        return await self._call(lambda: future, bounded=True)

    def _write_call(self, feed: str, items: Sequence[WriteItem]) -> asyncio.Future[Any]:
        args: list[Any] = [new_epoch(), feed, self._max_len, self._window, self._cutoff(), len(items)]
        for item in items:
            args.extend(item.args())
        future = self._batcher.evalsha(self._write, self.keys.change_keys(feed), args, acks=self._acks)
        if self.on_change is not None:
            future.add_done_callback(lambda done: self._written(feed, done))
        return future

    def _written(self, feed: str, done: asyncio.Future[Any]) -> None:
        """A write script answered: tell ``on_change`` (with whether the feed has followers)."""
        if done.cancelled() or done.exception() is not None:
            return
        result = done.result()
        if result[0] == b"ok" and self.on_change is not None:
            self.on_change(feed, bool(result[1]))

    def _send_merged(self, feed: str, merge: _MergedWrite) -> None:
        if self._merging.get(feed) is merge:
            del self._merging[feed]
        items = [item for group, _ in merge.groups for item in group]
        self._write_call(feed, items).add_done_callback(lambda done: self._split_merged(feed, merge, done))

    def _split_merged(self, feed: str, merge: _MergedWrite, done: asyncio.Future[Any]) -> None:
        groups = merge.groups
        try:
            bodies = _unpack_write(done.result())
        except (Forbidden, Conflict):
            if len(groups) == 1:
                _settle(groups[0][1], done, _unpack_write)
                return
            # One request spoiled the shared call (and nothing was written): run each on its own.
            for group, future in groups:
                self._write_call(feed, group).add_done_callback(
                    lambda own, future=future: _settle(future, own, _unpack_write)  # type: ignore[misc]
                )
            return
        except Exception as exc:  # Redis trouble: every request of the call gets it
            for _, future in groups:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for group, future in groups:
            if not future.done():
                future.set_result(bodies[start : start + len(group)])
            start += len(group)

    async def replace(self, feed: str, items: Sequence[ReplaceItem]) -> list[ItemResult]:
        """Replace activities of ``feed`` (each item on its own; see ``lua/replace.lua``)."""
        args: list[Any] = [new_epoch(), feed, self._window, len(items)]
        for item in items:
            args.extend(item.args())
        result = await self._run(self._replace, self.keys.change_keys(feed), args, acks=self._acks)
        return self._changed(feed, result)

    async def delete(
        self, feed: str, ids: Sequence[str], *, actor: str, may_override: bool, expected_version: int | None = None
    ) -> list[ItemResult]:
        """Delete activities of ``feed`` by id (each on its own; see ``lua/delete.lua``)."""
        args: list[Any] = [new_epoch(), feed, self._window, len(ids)]
        for activity_id in ids:
            version = "" if expected_version is None else expected_version
            args.extend((activity_id, version, actor, "1" if may_override else ""))
        result = await self._run(self._delete, self.keys.change_keys(feed), args, acks=self._acks)
        return self._changed(feed, result)

    def _changed(self, feed: str, result: list[Any]) -> list[ItemResult]:
        """The items' results of a replace/delete script; its last element says whether the feed
        has followers (passed to ``on_change``)."""
        if self.on_change is not None:
            self.on_change(feed, bool(result[-1]))
        return [_item_result(r) for r in result[:-1]]

    async def find(self, feed: str, refs: Sequence[tuple[str, str, str]]) -> list[bytes | None]:
        """Bodies by ``(id, "", "")`` or ``("", foreign_id, time)`` refs; None where there is none."""
        k = self.keys.feed(feed)
        args: list[Any] = ["refs", len(refs)]
        for ref in refs:
            args.extend(ref)
        result = await self._run(self._find, k, args)
        return [body if isinstance(body, bytes) else None for body in result]

    async def find_foreign_id(self, feed: str, foreign_id: str) -> list[bytes]:
        """Every body of ``feed`` with this ``foreign_id``."""
        k = self.keys.feed(feed)
        return list(await self._run(self._find, k, ["foreign_id", foreign_id]))

    async def marks(
        self, feed: str, mode: str, ids: Sequence[str] = (), *, all_: bool = False
    ) -> tuple[int, int, list[bool], list[bool]]:
        """Mark ids (or everything) of a notification feed ``seen``/``read``, or just read ``counts``.

        Returns (unseen, unread, seen flags, read flags) — one flag per id given.
        """
        keys = [*self.keys.feed(feed), *self.keys.notification_marks(feed)]
        acks = 0 if mode == "counts" else self._acks
        result = await self._run(self._marks, keys, [mode, "1" if all_ else "", *ids], acks=acks)
        n = len(ids)
        flags = [bool(x) for x in result[2:]]
        return int(result[0]), int(result[1]), flags[:n], flags[n:]

    async def cursor(self, feed: str, since: tuple[str, int] | None = None) -> CursorResult:
        """The feed's (epoch, seq); with ``since=(epoch, seq)`` also the change events after it."""
        k = self.keys.feed(feed)
        args: list[Any] = [new_epoch(), "", ""] if since is None else [new_epoch(), since[1], since[0]]
        result = await self._run(self._cursor, k, args)
        epoch, seq = result[0].decode(), int(result[1])
        if since is None:
            return CursorResult(epoch, seq, True, [])
        if result[2] == b"ok":
            return CursorResult(epoch, seq, True, list(result[3]))
        return CursorResult(epoch, seq, False, [])

    async def page(
        self,
        feed: str,
        *,
        lt: str = "",
        lt_inclusive: bool = False,
        lt_score: int | None = None,
        gt: str = "",
        gt_inclusive: bool = False,
        gt_score: int | None = None,
        ascending: bool = False,
        want: int,
        budget: int,
        sees_all: bool,
        sub: str | None,
        member: bool,
        roles: Sequence[str] = (),
        verb: str | None = None,
        actor: str | None = None,
    ) -> PageResult:
        """Up to ``want`` activities between the bounds that the reader may see and that match the
        filters, examining at most ``budget``; filtered inside Redis (see ``lua/read.lua``)."""
        args = [
            lt,
            "1" if lt_inclusive else "",
            "" if lt_score is None else lt_score,
            gt,
            "1" if gt_inclusive else "",
            "" if gt_score is None else gt_score,
            "asc" if ascending else "desc",
            want,
            budget,
            "1" if sees_all else "",
            sub or "",
            "1" if member else "",
            verb or "",
            actor or "",
            *roles,
        ]
        result = await self._run(self._read, self.keys.feed(feed), args)
        if result[0] == b"bad":
            raise Invalid(result[1].decode(), errors=[{"loc": "query", "msg": result[1].decode(), "type": "cursor"}])
        n = int(result[3])
        ids = [i.decode() for i in result[4 : 4 + n]]
        hidden = int(result[4 + 2 * n]) if len(result) > 4 + 2 * n else 0
        return PageResult(ids, list(result[4 + n : 4 + 2 * n]), result[1].decode() or None, result[2] == b"1", hidden)

    async def get(self, feed: str, activity_id: str) -> bytes | None:
        """The stored body of one activity, or None."""
        acts = self.keys.feed(feed).acts
        result = await self._call(lambda: self._batcher.command(acts, "HGET", acts, activity_id), bounded=True)
        return result if isinstance(result, bytes) else None

    async def close(self) -> None:
        """Let pipelines in flight finish."""
        await self._batcher.close()

    async def ping(self) -> bool:
        """True if Redis answers (on a cluster: every master)."""
        await self._call(self._batcher.ping, bounded=True)
        return True

    async def publish_probe(self, channel: str, payload: bytes) -> int:
        """Publish on a throwaway channel (``/readyz`` round trip); returns the receiver count."""
        return int(await self._call(lambda: self._batcher.command(channel, "SPUBLISH", channel, payload), bounded=True))


#: Upper bound on the items of one shared write call (a script runs alone in Redis meanwhile).
_MAX_MERGED_ITEMS = 500


class _MergedWrite:
    """Writes to one feed waiting for this tick's shared script call."""

    __slots__ = ("groups", "size")

    def __init__(self) -> None:
        self.groups: list[tuple[Sequence[WriteItem], asyncio.Future[list[bytes]]]] = []
        self.size = 0


def _settle(future: asyncio.Future[T], done: asyncio.Future[Any], unpack: Callable[[Any], T]) -> None:
    """Resolve ``future`` from a finished Redis call: ``unpack``'s result, or its/the call's error."""
    if future.done():
        return
    try:
        future.set_result(unpack(done.result()))
    except Exception as exc:
        future.set_exception(exc)


def _item_result(raw: list[Any]) -> ItemResult:
    status = raw[0].decode()
    if status == "ok":
        return ItemResult(status, body=raw[1])
    if status == "stale":
        return ItemResult(status, version=int(raw[1]))
    return ItemResult(status)


def _unpack_write(result: list[Any]) -> list[bytes]:
    status = result[0]
    if status == b"ok":
        return list(result[2:])  # result[1]: the feed has followers (see ``_written``)
    message = result[2].decode() if len(result) > 2 else ""
    error: FeedError
    if status == b"forbidden":
        error = Forbidden(f"activity #{result[1]}: {message}")
    elif status == b"conflict":
        error = Conflict(f"activity #{result[1]}: {message}")
    else:  # pragma: no cover - the scripts return only the statuses above
        error = Unavailable(f"unexpected script result {status!r}")
    raise error
