"""Ordered command lanes: concurrent Redis commands coalesced into pipelined round trips.

redis-py spends tens of microseconds of CPU per command or pipeline, whatever its size; under
concurrent load (many HTTP requests, pipelined WebSocket publishes) callers share pipelines
instead. A ``Lane`` owns one raw connection and sends one pipeline at a time, gathering
everything issued meanwhile into the next, so commands on one lane reach Redis in the order they
were issued (pipelines of one lane never overtake each other) while different lanes proceed in
parallel.

``Batcher`` is the single-node pipeline (one Redis, or the master a Sentinel group names: it only
needs a connection factory); ``backends.cluster.ClusterPipeline`` routes lanes per master by hash
slot. Both satisfy ``backends.base.Pipeline``; the lane logic here is shared:

- each pipeline gets ``timeout`` seconds; when one fails (timeout, lost connection) the commands
  queued behind it on its lane fail with it, so no caller waits much longer than ``timeout``
  whatever the queue — and the per-command cost of a timer is paid once per pipeline;
- scripts run as EVALSHA; every registered script is loaded (``SCRIPT LOAD``) when a lane
  connects, and a NOSCRIPT reply (restart, flush, a failover: the script cache is per node and not
  replicated) loads it on that connection and runs the command again;
- a call with ``acks`` > 0 is followed, in the same round trip, by ``WAIT acks timeout`` (one per
  pipeline: WAIT covers every earlier write of the connection); fewer acknowledgements fail the
  call with ``ReplicaAcksMissing``;
- a READONLY reply means the connection reached a demoted master: it is dropped, so the next
  pipeline connects afresh (and a Sentinel-managed connection asks the Sentinels again).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection

__all__ = ["Batcher", "Call", "Lane", "LaneOwner", "ReplicaAcksMissing", "ScriptRegistry", "round_trip"]


class ReplicaAcksMissing(redis_errors.RedisError):
    """``WAIT`` confirmed fewer replicas than asked for within the timeout (the write happened on
    the master and may still exist, or be lost in a failover)."""

    def __init__(self, wanted: int, acked: int) -> None:
        super().__init__(f"{acked} of {wanted} replicas acknowledged the write in time")
        self.wanted = wanted
        self.acked = acked


class Call:
    """One queued command: its arguments, the caller's future, and routing state."""

    __slots__ = ("args", "future", "slot", "acks", "asking", "hops")

    def __init__(self, args: tuple[Any, ...], future: asyncio.Future[Any], slot: int = -1, acks: int = 0) -> None:
        self.args = args
        self.future = future
        self.slot = slot  # hash slot (cluster) or -1
        self.acks = acks  # replicas that must confirm (WAIT) before the call succeeds
        self.asking = False  # send ASKING first (an ASK redirect, once)
        self.hops = 0  # redirects followed so far


class LaneOwner(Protocol):
    """What a lane needs from its pipeline."""

    timeout: float

    def connection(self, lane: Lane) -> AbstractConnection:
        """A new, not yet connected connection for ``lane``."""

    def scripts(self) -> dict[str, str]:
        """Every registered script by SHA1 (loaded on each new connection)."""

    def redirect(self, lane: Lane, redirected: list[tuple[Call, redis_errors.AskError]]) -> list[Call]:
        """Handle MOVED/ASK replies (in batch order); returns the calls it could not place."""

    def connection_failed(self, lane: Lane, exc: BaseException) -> None:
        """A lane's connection failed or reached a node that cannot serve it (READONLY)."""


async def round_trip(conn: AbstractConnection, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Write every command at once, then read every reply (errors as values, in order).

    This is what a redis-py pipeline does, on a connection the lane owns: no pipeline object, pool
    checkout or retry wrapper per round trip.
    """
    await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(await conn.read_response(timeout=math.inf))
        except redis_errors.ResponseError as exc:
            replies.append(exc)
    return replies


async def load_scripts(conn: AbstractConnection, scripts: dict[str, str]) -> None:
    """``SCRIPT LOAD`` every script on ``conn`` in one round trip (the cache is per node)."""
    if scripts:
        for reply in await round_trip(conn, [("SCRIPT", "LOAD", source) for source in scripts.values()]):
            if isinstance(reply, Exception):
                raise reply


async def execute(conn: AbstractConnection, commands: list[tuple[Any, ...]], scripts: dict[str, str]) -> list[Any]:
    """Send ``commands`` in one round trip on ``conn``; NOSCRIPT replies load the script there and
    run those commands again (in their order). Per-command errors are returned, not raised."""
    replies = await round_trip(conn, commands)
    retry = [i for i, r in enumerate(replies) if isinstance(r, redis_errors.NoScriptError)]
    if retry:
        wanted = {commands[i][1] for i in retry}
        await load_scripts(conn, {sha: source for sha, source in scripts.items() if sha in wanted})
        if commands[-1][0] == "WAIT":  # acknowledgements must cover the commands run again too
            retry.append(len(commands) - 1)
        again = await round_trip(conn, [commands[i] for i in retry])
        for i, reply in zip(retry, again, strict=True):
            replies[i] = reply
    return replies


class Lane:
    """One ordered stream of pipelines on one connection (see the module docstring)."""

    __slots__ = ("_owner", "addr", "pending", "_conn", "task", "wait_ms")

    def __init__(self, owner: LaneOwner, addr: str = "", *, wait_ms: int = 0) -> None:
        self._owner = owner
        self.addr = addr  # "host:port" of the node (cluster), "" otherwise
        self.pending: list[Call] = []
        self._conn: AbstractConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.wait_ms = wait_ms  # WAIT's timeout

    async def disconnect(self) -> None:
        """Drop the connection (the next batch opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect()

    def release(self) -> asyncio.Future[None] | None:
        """Detach the connection now and close it in the background (the lane reconnects if used)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return None
        return asyncio.ensure_future(_quiet_disconnect(conn))

    def push(self, call: Call) -> None:
        """Queue ``call`` behind everything already on this lane."""
        self.pending.append(call)
        if self.task is None:
            self.task = asyncio.create_task(self._run())

    def extend(self, calls: list[Call]) -> None:
        """Queue ``calls`` in order."""
        if calls:
            self.pending.extend(calls)
            if self.task is None:
                self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                await self._send(batch)
        finally:
            self.task = None

    def _commands(self, batch: list[Call]) -> tuple[list[tuple[Any, ...]], int]:
        acks = 0
        asking = False
        for call in batch:
            acks = max(acks, call.acks)
            asking = asking or call.asking
        if not acks and not asking:
            return [call.args for call in batch], 0
        commands: list[tuple[Any, ...]] = []
        for call in batch:
            if call.asking:
                commands.append(("ASKING",))
            commands.append(call.args)
        if acks:
            commands.append(("WAIT", acks, self.wait_ms))
        return commands, acks

    async def _send(self, batch: list[Call]) -> None:
        owner = self._owner
        commands, acks = self._commands(batch)
        if self._conn is not None and _closed_by_peer(self._conn):
            await self.disconnect()  # Redis restarted or failed over while this lane was idle
        try:
            async with asyncio.timeout(owner.timeout + (self.wait_ms / 1000 if acks else 0)):
                if self._conn is None:
                    conn = owner.connection(self)
                    await conn.connect()
                    self._conn = conn
                    await load_scripts(conn, owner.scripts())
                replies = await execute(self._conn, commands, owner.scripts())
        except BaseException as exc:  # Redis stalled or the connection failed: this batch and the ones
            await self.disconnect()  # replies may still be on their way: never reuse the connection
            batch += self.pending  # queued behind it fail now rather than wait another timeout
            self.pending = []
            failure = exc if isinstance(exc, Exception) else redis_errors.ConnectionError("shutting down")
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            owner.connection_failed(self, exc)
            return
        if len(replies) != len(batch):
            replies = self._strip(batch, replies, acks)
        if self._settle(batch, replies, acks):  # a demoted master: re-discover before the next pipeline
            await self.disconnect()
            owner.connection_failed(self, redis_errors.ReadOnlyError("READONLY"))

    def _strip(self, batch: list[Call], replies: list[Any], acks: int) -> list[Any]:
        """Drop the replies of ASKING and WAIT, keeping one per call; remember WAIT's count."""
        acked = replies[-1] if acks else None
        kept: list[Any] = []
        i = 0
        for call in batch:
            if call.asking:
                i += 1  # ASKING's +OK (an error here shows in the command's own reply)
            kept.append(replies[i])
            i += 1
        if acks:
            kept.append(acked)
        return kept

    def _settle(self, batch: list[Call], replies: list[Any], acks: int) -> bool:
        """Resolve the callers' futures; hand redirects to the owner. True if a reply was READONLY."""
        acked = replies[-1] if acks else 0
        if acks and not isinstance(acked, int):  # WAIT refused (e.g. on a replica): nobody confirmed
            acked = 0
        redirected: list[tuple[Call, redis_errors.AskError]] = []
        readonly = False
        for call, reply in zip(batch, replies, strict=False):
            if isinstance(reply, redis_errors.AskError):
                redirected.append((call, reply))
                continue
            if call.future.done():
                continue  # the caller timed out
            if isinstance(reply, Exception):
                readonly = readonly or isinstance(reply, redis_errors.ReadOnlyError)
                call.future.set_exception(reply)
            elif call.acks and acked < call.acks:
                call.future.set_exception(ReplicaAcksMissing(call.acks, acked))
            else:
                call.future.set_result(reply)
        if redirected:
            errors = {id(call): error for call, error in redirected}
            for call in self._owner.redirect(self, redirected):
                if not call.future.done():
                    call.future.set_exception(errors.get(id(call)) or redis_errors.ConnectionError("not routable"))
        return readonly


async def _quiet_disconnect(conn: AbstractConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.disconnect()


def _closed_by_peer(conn: AbstractConnection) -> bool:
    """True if the server already closed ``conn`` (seen by the event loop while the lane was idle).

    Sending on it would fail after the fact; finding out first spares the callers a 503."""
    reader = getattr(conn, "_reader", None)
    if reader is None:
        return False
    return bool(reader.at_eof() or reader.exception() is not None)


class ScriptRegistry:
    """The Lua scripts a pipeline loads on each connection it opens, by SHA1 (shared by ``Batcher``
    and ``backends.cluster.ClusterPipeline``)."""

    def __init__(self) -> None:
        self._scripts: dict[str, str] = {}

    def script(self, source: str) -> str:
        """Register a script; returns its SHA1 (what ``evalsha`` takes)."""
        sha = hashlib.sha1(source.encode()).hexdigest()
        self._scripts[sha] = source
        return sha

    def scripts(self) -> dict[str, str]:
        """Every registered script by SHA1."""
        return self._scripts


class Batcher(ScriptRegistry):
    """The single-node pipeline: ``lanes`` ordered lanes over connections from ``connect``.

    ``connect()`` makes a new, unconnected connection: from a plain pool for one Redis, or from a
    ``SentinelConnectionPool`` (which asks the Sentinels for the master on every connect).
    Commands are spread over the lanes by their first key.
    """

    def __init__(
        self, connect: Callable[[], AbstractConnection], *, timeout: float, lanes: int = 8, wait_timeout: float = 0
    ) -> None:
        self._connect = connect
        self.timeout = timeout
        wait_ms = int((wait_timeout or timeout) * 1000)
        self._lanes = [Lane(self, wait_ms=wait_ms) for _ in range(lanes)]
        super().__init__()

    def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Any], *, acks: int = 0) -> asyncio.Future[Any]:
        """Queue a script call (followed by ``WAIT acks`` when ``acks`` > 0)."""
        key = keys[0] if keys else ""
        future = asyncio.get_running_loop().create_future()
        self._lanes[hash(key) % len(self._lanes)].push(
            Call(("EVALSHA", sha, len(keys), *keys, *args), future, -1, acks)
        )
        return future

    def command(self, key: str, *args: Any) -> asyncio.Future[Any]:
        """Queue a command on ``key``'s lane; the future gets its reply or error."""
        future = asyncio.get_running_loop().create_future()
        self._lanes[hash(key) % len(self._lanes)].push(Call(args, future))
        return future

    async def ping(self) -> None:
        """PING through a lane (raises if Redis does not answer in time).

        A lane idle through an outage still holds its dead connection, which fails once: PING is
        idempotent, so that one failure is retried on a fresh connection."""
        try:
            await self.command("", "PING")
        except (redis_errors.ConnectionError, OSError):
            await self.command("", "PING")

    def connection(self, lane: Lane) -> AbstractConnection:
        """A new connection (each lane owns one)."""
        return self._connect()

    def redirect(self, lane: Lane, redirected: list[tuple[Call, redis_errors.AskError]]) -> list[Call]:
        """One node does not follow redirects (a cluster needs ``cluster = "on"``/auto)."""
        return [call for call, _ in redirected]

    def connection_failed(self, lane: Lane, exc: BaseException) -> None:
        """Nothing to refresh: the lane reconnects on its next pipeline."""

    async def close(self) -> None:
        """Wait for pipelines in flight, then close the lanes' connections."""
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes:
            await lane.disconnect()
