"""Redis Cluster / Valkey cluster: slot-routed command lanes (``ClusterPipeline``).

Every key of a feed shares the hash tag ``{feed}`` (``keys.py``), so one feed lives in one slot
and each script touches one node. The pipeline keeps a slot table (``CLUSTER SLOTS`` from any
known node or seed) and, per master, ``lanes_per_node`` ordered lanes (``pipeline.Lane``); a
command goes to lane ``slot % lanes_per_node`` of its slot's owner, so one feed's commands keep
their order and concurrent commands per node still share pipelines (redis-py's ``RedisCluster``
spends about 1.5× the client CPU per command; it is not on this path).

Topology events never reach a client as anything but a 503:

- ``MOVED``: the slot's owner is updated, and that command plus everything of that slot still
  queued on the old lane move, in order, to the new owner's lane; a full table refresh follows
  (rate-limited);
- ``ASK``: ``ASKING`` + the command once on the importing node (the table is not changed);
- a refused or dropped connection, or a READONLY reply: the calls fail (503) and the table is
  refreshed, so the next calls reach the promoted replica once the cluster has failed over;
- ``TRYAGAIN``, ``CLUSTERDOWN``, ``MASTERDOWN``: passed to the caller, which answers 503;
- scripts are loaded on every new connection and NOSCRIPT is recovered per node (the script
  cache is not replicated: a promoted replica answers NOSCRIPT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .pipeline import Call, Lane, ScriptRegistry, round_trip

log = logging.getLogger("feedserver.cluster")

__all__ = ["ClusterPipeline", "cluster_enabled", "node_address"]

#: Redirects one call may follow before it fails (a slot bouncing between nodes mid-reshard).
_MAX_HOPS = 5


def node_address(url: str) -> str:
    """``host:port`` of a Redis URL (or of a bare ``host:port``)."""
    if "://" not in url:
        return url
    kwargs = parse_url(url)
    return f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}"


def cluster_enabled(urls: Sequence[str], timeout: float) -> tuple[bool, str] | None:
    """Ask the first reachable of ``urls`` whether it runs in cluster mode (``INFO cluster``).

    Returns (enabled, the URL that answered), or None when no URL answered. Synchronous: it runs
    once, while the app is built, before anything else connects.
    """
    for url in urls:
        kwargs: dict[str, Any] = dict(parse_url(url))
        kwargs.pop("db", None)  # SELECT would fail on a cluster node, and INFO needs no database
        kwargs.pop("connection_class", None)
        client = redis.Redis(
            **kwargs,
            ssl=url.startswith("rediss://"),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            protocol=2,
        )
        try:
            info = client.info("cluster")
        except (redis_errors.RedisError, OSError):
            continue
        finally:
            client.close()
        return bool(int(info.get("cluster_enabled", 0))), url
    return None


class ClusterPipeline(ScriptRegistry):
    """``backends.base.Pipeline`` over a cluster's masters (see the module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float,
        lanes_per_node: int = 4,
        wait_timeout: float = 0,
        refresh_interval: float = 0.1,
    ) -> None:
        if not urls:
            raise ValueError("a cluster needs at least one node URL")
        kwargs: dict[str, Any] = dict(parse_url(urls[0]))
        self._conn_class: type[Connection] = kwargs.pop("connection_class", Connection)
        for name in ("host", "port", "db"):
            kwargs.pop(name, None)
        kwargs.update(socket_connect_timeout=timeout, socket_timeout=None, protocol=2)
        self._conn_kwargs = kwargs
        self.timeout = timeout
        self._lanes_per_node = lanes_per_node
        self._wait_ms = int((wait_timeout or timeout) * 1000)
        self._seeds = list(dict.fromkeys(node_address(url) for url in urls))
        super().__init__()
        # slot → the owner's lanes (one list object per node, shared by its slots); None: unknown
        self._slots: list[list[Lane] | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._nodes: dict[str, list[Lane]] = {}
        self._replicas: list[str] = []
        self._slot_of: dict[str, int] = {}
        self._waiting: list[Call] = []  # calls whose slot has no known owner yet
        self._suspects: set[str] = set()  # nodes whose connections failed lately: asked last
        self._closing: set[asyncio.Future[None]] = set()  # disconnects of lanes of demoted masters
        self._refresh_task: asyncio.Task[None] | None = None
        self._refresh_again = False
        self._refresh_interval = refresh_interval
        self._last_refresh = -1e9
        self.refreshes = 0  # slot-table refreshes done (metrics, tests)
        self.redirects = 0  # MOVED/ASK replies followed

    # -- Pipeline ---------------------------------------------------------------------------

    def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Any], *, acks: int = 0) -> asyncio.Future[Any]:
        """Queue a script call on the owner of its keys' slot (all keys share one hash tag)."""
        future = asyncio.get_running_loop().create_future()
        self._route(Call(("EVALSHA", sha, len(keys), *keys, *args), future, self._slot(keys[0]), acks))
        return future

    def command(self, key: str, *args: Any) -> asyncio.Future[Any]:
        """Queue a command on the owner of ``key``'s slot."""
        future = asyncio.get_running_loop().create_future()
        self._route(Call(args, future, self._slot(key)))
        return future

    async def ping(self) -> None:
        """PING every master that owns slots (and learn the topology first if need be)."""
        if not any(self._slots):
            await self._refresh_now()
        owners = {id(lanes): lanes for lanes in self._slots if lanes is not None}
        if not owners:
            raise redis_errors.ClusterDownError("no reachable cluster node knows the slot table")
        await asyncio.gather(*(_ping(lanes[0]) for lanes in owners.values()))

    async def close(self) -> None:
        """Stop refreshing, wait for pipelines in flight, close every connection."""
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh_task
        lanes = [lane for node in self._nodes.values() for lane in node]
        tasks = [lane.task for lane in lanes if lane.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for lane in lanes:
            await lane.disconnect()
        if self._closing:  # connections of demoted masters still being closed in the background
            await asyncio.gather(*self._closing, return_exceptions=True)
        for call in self._waiting:
            if not call.future.done():
                call.future.set_exception(redis_errors.ConnectionError("shutting down"))
        self._waiting = []

    @property
    def masters(self) -> list[str]:
        """``host:port`` of every node that owns slots, as last seen."""
        seen = {id(lanes): lanes[0].addr for lanes in self._slots if lanes is not None}
        return sorted(set(seen.values()))

    def owner(self, key: str) -> str | None:
        """``host:port`` of the node ``key``'s slot is routed to now (None: unknown)."""
        lanes = self._slots[self._slot(key)]
        return lanes[0].addr if lanes is not None else None

    # -- LaneOwner ----------------------------------------------------------------------------

    def connection(self, lane: Lane) -> AbstractConnection:
        """A new connection to ``lane``'s node."""
        host, _, port = lane.addr.rpartition(":")
        return self._conn_class(host=host, port=int(port), **self._conn_kwargs)

    def redirect(self, lane: Lane, redirected: list[tuple[Call, redis_errors.AskError]]) -> list[Call]:
        """Follow MOVED (new owner; the slot's queued calls move along, in order) and ASK (once)."""
        unplaced: list[Call] = []
        moved: dict[int, list[Call]] = {}
        for call, error in redirected:
            call.hops += 1
            self.redirects += 1
            if call.hops > _MAX_HOPS or call.slot < 0:
                unplaced.append(call)
                continue
            addr = f"{error.host}:{error.port}"
            if isinstance(error, redis_errors.MovedError):
                self._slots[error.slot_id] = self._lanes_of(addr)
                moved.setdefault(call.slot, []).append(call)
            else:  # ASK: the slot is being migrated; this key is already on the importing node
                call.asking = True
                target = self._lanes_of(addr)
                target[call.slot % len(target)].push(call)
        for slot, calls in moved.items():
            # What is still queued on the old lane for this slot must not overtake the redirected calls.
            calls += [call for call in lane.pending if call.slot == slot]
            lane.pending = [call for call in lane.pending if call.slot != slot]
            self._place(calls)
        if moved:
            self._schedule_refresh()
        return unplaced

    def connection_failed(self, lane: Lane, exc: BaseException) -> None:
        """A node failed or is no longer a master: learn the topology again (rate-limited), asking
        that node last."""
        self._suspects.add(lane.addr)
        self._schedule_refresh()

    # -- routing ------------------------------------------------------------------------------

    def _slot(self, key: str) -> int:
        slot = self._slot_of.get(key)
        if slot is None:
            slot = key_slot(key.encode())
            if len(self._slot_of) < 100_000:
                self._slot_of[key] = slot
        return slot

    def _route(self, call: Call) -> None:
        lanes = self._slots[call.slot]
        if lanes is None:
            self._waiting.append(call)
            self._schedule_refresh()
        else:
            lanes[call.slot % len(lanes)].push(call)

    def _place(self, calls: list[Call]) -> None:
        """Queue calls (in order) on their slots' current owners, or wait for a refresh."""
        for call in calls:
            self._route(call)

    def _lanes_of(self, addr: str) -> list[Lane]:
        lanes = self._nodes.get(addr)
        if lanes is None:
            lanes = self._nodes[addr] = [Lane(self, addr, wait_ms=self._wait_ms) for _ in range(self._lanes_per_node)]
        return lanes

    # -- topology -----------------------------------------------------------------------------

    def _schedule_refresh(self) -> None:
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.create_task(self._refresh_loop(), name="cluster-slots")
        else:
            self._refresh_again = True

    async def _refresh_now(self) -> None:
        self._schedule_refresh()
        task = self._refresh_task
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def _refresh_loop(self) -> None:
        while True:
            delay = self._last_refresh + self._refresh_interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._refresh_again = False
            try:
                known = await self._refresh()
            except Exception:  # never leave waiting calls hanging on a bug
                log.exception("cluster slot-table refresh failed")
                known = False
            self._last_refresh = time.monotonic()
            self._dispatch_waiting(known)
            if not self._refresh_again:
                return

    async def _refresh(self) -> bool:
        """Read ``CLUSTER SLOTS`` from the first node that answers: masters, replicas, then seeds,
        nodes that just failed last. Each gets a fraction of ``timeout``, so one frozen node
        (SIGSTOP, a black hole) cannot keep the table from being learnt from the others."""
        known = list(dict.fromkeys([*self.masters, *self._replicas, *self._seeds]))
        candidates = [a for a in known if a not in self._suspects] + [a for a in known if a in self._suspects]
        each = max(self.timeout / 4, 0.1)
        try:
            async with asyncio.timeout(2 * self.timeout):
                for addr in candidates:
                    try:
                        async with asyncio.timeout(each):
                            reply = await self._ask(addr, ("CLUSTER", "SLOTS"))
                    except (redis_errors.RedisError, OSError, TimeoutError):
                        self._suspects.add(addr)
                        continue
                    if isinstance(reply, list) and reply:
                        self._suspects.discard(addr)
                        self._apply(reply, addr)
                        return True
        except TimeoutError:
            pass
        log.warning("no cluster node answered CLUSTER SLOTS (tried %s)", ", ".join(candidates))
        return False

    async def _ask(self, addr: str, command: tuple[Any, ...]) -> Any:
        host, _, port = addr.rpartition(":")
        conn = self._conn_class(host=host, port=int(port), **self._conn_kwargs)
        try:
            await conn.connect()
            [reply] = await round_trip(conn, [command])
        finally:
            with contextlib.suppress(Exception):
                await conn.disconnect()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _apply(self, reply: list[Any], asked: str) -> None:
        """Install a ``CLUSTER SLOTS`` reply; move queued calls whose slot changed owner."""
        asked_host = asked.rpartition(":")[0]
        table: list[list[Lane] | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        replicas: list[str] = []
        for entry in reply:
            start, end, master = int(entry[0]), int(entry[1]), entry[2]
            lanes = self._lanes_of(_addr(master, asked_host))
            table[start : end + 1] = [lanes] * (end - start + 1)
            replicas.extend(_addr(node, asked_host) for node in entry[3:])
        old, self._slots = self._slots, table
        self._replicas = list(dict.fromkeys(replicas))
        self.refreshes += 1
        # Calls queued on a lane whose slot now belongs elsewhere follow their slot, in order.
        owners = {id(lanes) for lanes in table if lanes is not None}
        for lanes in self._nodes.values():
            if id(lanes) not in owners:  # a demoted or removed master: let its idle connections go
                for lane in lanes:
                    if lane.task is None and not lane.pending and (closing := lane.release()) is not None:
                        self._closing = {task for task in self._closing if not task.done()}
                        self._closing.add(closing)
            for lane in lanes:
                if lane.pending and any(table[c.slot] is not old[c.slot] for c in lane.pending if c.slot >= 0):
                    stay = [c for c in lane.pending if c.slot < 0 or table[c.slot] is old[c.slot]]
                    leave = [c for c in lane.pending if c.slot >= 0 and table[c.slot] is not old[c.slot]]
                    lane.pending = stay
                    self._place(leave)

    def _dispatch_waiting(self, known: bool) -> None:
        waiting, self._waiting = self._waiting, []
        for call in waiting:
            if self._slots[call.slot] is not None:
                self._route(call)
            elif not call.future.done():
                error: Exception = (
                    redis_errors.ClusterDownError(f"no master serves slot {call.slot}")
                    if known
                    else redis_errors.ConnectionError("no cluster node is reachable")
                )
                call.future.set_exception(error)


async def _ping(lane: Lane) -> None:
    """PING on ``lane``; once more on a fresh connection if its idle one was dead (PING is idempotent)."""
    for attempt in (1, 2):
        future = asyncio.get_running_loop().create_future()
        lane.push(Call(("PING",), future))
        try:
            await future
            return
        except (redis_errors.ConnectionError, OSError):
            if attempt == 2:
                raise


def _addr(node: list[Any], asked_host: str) -> str:
    """``host:port`` of a node entry of ``CLUSTER SLOTS`` (an empty or ``?`` host: the one asked)."""
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    if not host or host == "?":
        host = asked_host
    return f"{host}:{int(node[1])}"
