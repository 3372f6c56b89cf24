"""ClusterBroker: live events on a Redis Cluster / Valkey cluster through sharded pub/sub.

One raw connection per master that owns a wanted channel, one ``SSUBSCRIBE`` per channel (a
command naming channels of two slots is refused with ``CROSSSLOT``, even on one node), and a
slot table read from ``CLUSTER SLOTS``. Subscriptions are placed on masters only: Valkey drops a
replica's shard subscribers when it is promoted, and a partitioned replica just goes quiet.

A channel is **lost** when

- its connection drops (SIGKILL of the node, network);
- its connection misses its PING deadline (a frozen node: SIGSTOP sends nothing at all);
- the node pushes an ``sunsubscribe`` this broker did not ask for (graceful failover, slot
  migration; replies to our own ``SUNSUBSCRIBE`` are told apart by the order of replies);
- its ``SSUBSCRIBE`` is answered with an error (``MOVED``, ``CLUSTERDOWN``, …);
- a periodic ``CLUSTER SLOTS`` shows another master owns its slot (a node that was frozen while
  its replica was promoted).

A lost channel is re-placed on the slot's owner after a topology refresh (backoff 50 ms → 0.5 s;
nodes that just failed are asked last), and once the owner confirmed it ``on_resync([feed])``
asks the hub to re-read exactly those feeds from their change logs: whatever was published
while the channel was down is in the log, anything later arrives on the new connection.

Why not redis-py's ``ClusterPubSub`` (8.x): it polls the per-node subscribers one at a time
(each for the full timeout, so a frozen node throttles every other one), it re-places channels
only when that same client's own commands hit ``MOVED``, it lost subscriptions silently after a
graceful failover in our measurements, and it has no hook to tell the application which feeds
need a resync (``/work/shared/research/redis-cluster.md`` §2(d)). A hand-built reader needs only
``redis.asyncio.connection.Connection`` and ``redis.crc.key_slot``, which exist since redis 5.

``/readyz`` (``check_ready``) keeps one probe channel per master, named with a hash tag that
lands in a slot *that* master owns, and proves for each master that it is a master and that a
``SPUBLISH`` on it comes back through this process.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.crc import key_slot

from ..errors import Unavailable
from ..keys import Keys

log = logging.getLogger("feedserver.broker")

_NETWORK_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, EOFError, TimeoutError)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 0.5
#: A node whose connection failed this recently is asked last (topology) and not trusted first.
_BAD_FOR = 2.0
#: Hash-tag candidates tried per master to find one in its slots (a master owning one slot of
#: 16384 needs ~16k tries on average; this bounds the search on a pathological layout).
_MAX_TAG_TRIES = 400_000


class ClusterStats(Protocol):
    """Per-node metrics the broker reports (``metrics.Metrics``)."""

    def node_connected(self, node: str, up: bool) -> None:
        """The pub/sub connection to ``node`` went up or down."""

    def node_slots(self, node: str, slots: int) -> None:
        """``node`` owns ``slots`` slots (0: no longer a master)."""

    def channels_replaced(self, node: str, n: int) -> None:
        """``n`` lost channels were confirmed again on ``node``."""

    def failover_seen(self, node: str) -> None:
        """``node`` stopped being the master of slots it owned (failover, shutdown, migration)."""


class _Channel:
    """One wanted channel (a feed's, or a master's readiness probe) and where it is placed."""

    __slots__ = ("name", "feed", "slot", "wanted", "node", "gen", "confirmed", "lost", "waiters", "probe_of")

    def __init__(self, name: bytes, feed: str | None, probe_of: str | None = None) -> None:
        self.name = name
        self.feed = feed
        self.probe_of = probe_of  # the master this probe channel belongs to
        self.slot = key_slot(name)
        self.wanted = True
        self.node: _Node | None = None
        self.gen = 0  # bumped on every placement: confirmations of older ones are ignored
        self.confirmed = False
        self.lost = False  # was confirmed once and then lost: resync when confirmed again
        self.waiters: deque[asyncio.Future[None]] = deque()


class _Node:
    """This process's pub/sub connection to one master, and what is placed on it."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        host, _, port = addr.rpartition(":")
        self.host, self.port = host, int(port)
        self.conn: Connection | None = None
        self.up = False
        self.task: asyncio.Task[None] | None = None
        self.channels: set[_Channel] = set()
        # What each reply on the connection answers, in order: ("sub", channel, gen),
        # ("unsub", name) or ("ping",). Pushes (smessage, unrequested sunsubscribe) are not here.
        self.expected: deque[tuple[Any, ...]] = deque()
        self.outbox: list[tuple[Any, ...]] = []
        self.outbox_ready = asyncio.Event()
        self.last_reply = 0.0
        self.failed_at = -math.inf
        self.retry_at = 0.0  # no new connection attempt before this (monotonic)
        self.backoff = _BACKOFF_FIRST
        self.command: Redis | None = None  # for readiness publishes (a subscribed connection can't)

    @property
    def bad(self) -> bool:
        return time.monotonic() - self.failed_at < _BAD_FOR


class ClusterBroker:
    """Sharded pub/sub reader over every master that owns a wanted channel (see module doc)."""

    def __init__(
        self,
        seeds: list[str],
        keys: Keys,
        on_event: Callable[[str, bytes], None],
        on_resync: Callable[[Collection[str] | None], None],
        *,
        subscribe_timeout: float,
        on_state: Callable[[bool], None] | None = None,
        metrics: ClusterStats | None = None,
        health_interval: float = 1.0,
        health_timeout: float = 3.0,
        refresh_interval: float = 1.0,
    ) -> None:
        self._seeds = [_addr_of(s) for s in seeds]
        if not self._seeds:
            raise ValueError("ClusterBroker needs at least one seed node")
        self._keys = keys
        self._on_event = on_event
        self._on_resync = on_resync
        self._on_state = on_state or (lambda up: None)
        self._metrics = metrics
        self._subscribe_timeout = subscribe_timeout
        self._health_interval = health_interval
        self._health_timeout = health_timeout
        self._refresh_interval = refresh_interval
        self._channels: dict[bytes, _Channel] = {}
        self._nodes: dict[str, _Node] = {}
        # Slot table: range starts (sorted) and, per range, (last slot, master address).
        self._starts: list[int] = []
        self._ranges: list[tuple[int, str]] = []
        self._masters: dict[str, int] = {}  # master → slots owned
        self._replicas: list[str] = []  # asked for the slot table too (a seed may be gone)
        self._table_ok = False
        self._refresh_failing = False
        self._work = asyncio.Event()
        self._refresh_now = True
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._up = False
        self._probe_token = secrets.token_hex(6)
        self._probe_tags: dict[tuple[int, int], str] = {}
        self._probes: dict[bytes, asyncio.Future[None]] = {}
        self._ready = asyncio.Event()
        self._lost_log: dict[str, tuple[int, str]] = {}
        self._lost_flush: asyncio.TimerHandle | None = None

    # -- public API (the Broker contract) -----------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while every master has a live connection with its probe channel confirmed."""
        return self._up

    @property
    def masters(self) -> dict[str, int]:
        """The masters of the last slot table read, with the number of slots each owns."""
        return dict(self._masters)

    async def start(self) -> None:
        """Start the reader; returns once every master is connected (or after ``subscribe_timeout``)."""
        self._tasks = [
            asyncio.create_task(self._place_loop(), name="cluster-broker-place"),
            asyncio.create_task(self._refresh_loop(), name="cluster-broker-refresh"),
        ]
        self._work.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._subscribe_timeout):
                await self._ready.wait()

    async def close(self) -> None:
        """Stop every task and close every connection."""
        self._closing = True
        if self._lost_flush is not None:
            self._lost_flush.cancel()
        tasks = [*self._tasks, *(n.task for n in self._nodes.values() if n.task is not None)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for node in self._nodes.values():
            await _disconnect(node.conn)
            node.conn = None
            if node.command is not None:
                with contextlib.suppress(Exception):
                    await node.command.aclose()
        for channel in self._channels.values():
            _fail_waiters(channel)

    async def subscribe(self, feed: str) -> None:
        """Subscribe ``feed``'s channel on its slot's master; return once confirmed (503 if it can't)."""
        name = self._keys.channel(feed).encode()
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(name, feed)
        elif channel.wanted and channel.confirmed:
            return
        channel.wanted = True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        channel.waiters.append(waiter)
        if channel.node is None:
            self._work.set()
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                await waiter
        except TimeoutError:
            if waiter in channel.waiters:
                channel.waiters.remove(waiter)
            if not channel.waiters and not channel.confirmed and self._channels.get(name) is channel:
                # Nobody waits and it never flowed: the hub drops the room whose join failed.
                self._drop(channel)
            raise Unavailable("live events are unavailable (Redis pub/sub)", retry_after=1.0) from None

    def unsubscribe(self, feed: str) -> None:
        """Stop receiving ``feed``'s events (its ``SUNSUBSCRIBE`` is ordered after earlier commands)."""
        channel = self._channels.get(self._keys.channel(feed).encode())
        if channel is not None and not channel.waiters:
            self._drop(channel)

    async def check_ready(self, timeout: float) -> None:
        """Per master: it is a master, and a ``SPUBLISH`` in its slots comes back here (503 otherwise)."""
        if not self._table_ok:
            raise Unavailable("cluster slot table unknown or incomplete (some slots have no master)", retry_after=1.0)
        probes = [c for c in self._channels.values() if c.probe_of is not None and c.wanted]
        missing = set(self._masters) - {c.probe_of for c in probes}
        if missing:
            raise Unavailable(f"pub/sub to {', '.join(sorted(missing))} not placed yet", retry_after=1.0)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(self._probe(c) for c in probes))
        except TimeoutError:
            raise Unavailable("pub/sub round trip through the cluster timed out", retry_after=1.0) from None

    # -- readiness -------------------------------------------------------------------------------

    async def _probe(self, channel: _Channel) -> None:
        assert channel.probe_of is not None
        addr = channel.probe_of
        node = channel.node
        if node is None or not node.up or not channel.confirmed:
            raise Unavailable(f"pub/sub connection to {addr} is down", retry_after=1.0)
        if node.command is None:
            node.command = Redis(host=node.host, port=node.port, protocol=2, socket_connect_timeout=2.0)
        nonce = secrets.token_hex(8).encode()
        arrived = self._probes[nonce] = asyncio.get_running_loop().create_future()
        try:
            async with node.command.pipeline(transaction=False) as pipe:
                pipe.execute_command("ROLE")
                pipe.execute_command("SPUBLISH", channel.name, nonce)
                role, _ = await pipe.execute()
            if role[0] not in (b"master", "master"):
                raise Unavailable(f"{addr} is not a master any more", retry_after=1.0)
            await arrived
        except redis_errors.ResponseError as exc:  # MOVED: the table is stale, a refresh is due
            self._refresh_now = True
            self._work.set()
            raise Unavailable(f"{addr} refused the readiness publish: {exc}", retry_after=1.0) from None
        except _NETWORK_ERRORS as exc:
            raise Unavailable(f"{addr} is unreachable: {type(exc).__name__}", retry_after=1.0) from None
        finally:
            self._probes.pop(nonce, None)

    def _probe_tag(self, lo: int, hi: int) -> str:
        """A hash tag whose slot is in [lo, hi] (cached per range)."""
        tag = self._probe_tags.get((lo, hi))
        if tag is None:
            for i in range(_MAX_TAG_TRIES):
                candidate = f"readyz-{i}"
                if lo <= key_slot(candidate.encode()) <= hi:
                    tag = candidate
                    break
            else:  # pragma: no cover - a range this narrow needs an unlucky layout
                tag = f"readyz-{lo}"
            self._probe_tags[(lo, hi)] = tag
        return tag

    def _sync_probes(self) -> None:
        """One probe channel per master, in a slot that master owns; drop those of ex-masters."""
        wanted: dict[bytes, str] = {}
        for (last, master), first in zip(self._ranges, self._starts, strict=True):
            if master not in wanted.values():
                tag = self._probe_tag(first, last)
                wanted[f"{self._keys.prefix}{{{tag}}}:{self._probe_token}".encode()] = master
        for channel in list(self._channels.values()):
            if channel.probe_of is not None and wanted.get(channel.name) != channel.probe_of:
                self._drop(channel)
        for name, master in wanted.items():
            if name not in self._channels:
                self._channels[name] = _Channel(name, None, probe_of=master)
                self._work.set()

    # -- placement -------------------------------------------------------------------------------

    async def _place_loop(self) -> None:
        """Place every wanted, unplaced channel on its slot's master; back off while some can't be."""
        delay = _BACKOFF_FIRST
        while not self._closing:
            await self._work.wait()
            self._work.clear()
            try:
                if self._refresh_now or not self._table_ok:
                    await self._refresh()
                left = self._place_all()
            except Exception:  # a bug must not end live delivery for the whole process
                log.exception("cluster pub/sub placement failed; retrying")
                left = True
            if left:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                self._refresh_now = True
                self._work.set()
            else:
                delay = _BACKOFF_FIRST

    def _place_all(self) -> bool:
        """Assign unplaced channels to their owners; True if some could not be placed."""
        left = False
        for channel in list(self._channels.values()):
            if not channel.wanted or channel.node is not None:
                continue
            owner = self._owner(channel.slot)
            if owner is None:
                left = True
                continue
            node = self._node(owner)
            if not node.up and (node.task is None or node.task.done()) and time.monotonic() < node.retry_at:
                left = True  # it failed a moment ago: refresh the table and try again after a pause
                continue
            channel.node = node
            channel.gen += 1
            channel.confirmed = False
            node.channels.add(channel)
            if node.up:
                self._send(node, ("SSUBSCRIBE", channel.name), ("sub", channel, channel.gen))
            elif node.task is None or node.task.done():
                node.task = asyncio.create_task(self._serve(node), name=f"cluster-broker:{node.addr}")
            # else: the connect under way subscribes everything placed on the node.
        return left

    def _drop(self, channel: _Channel) -> None:
        """Not wanted any more: unsubscribe where it is placed and forget it."""
        channel.wanted = False
        self._unplace(channel)
        if self._channels.get(channel.name) is channel and not channel.waiters:
            del self._channels[channel.name]

    def _unplace(self, channel: _Channel) -> None:
        node, channel.node = channel.node, None
        channel.confirmed = False
        if node is not None:
            node.channels.discard(channel)
            if node.up:
                self._send(node, ("SUNSUBSCRIBE", channel.name), ("unsub", channel.name))

    def _lose(self, channels: Iterable[_Channel], node: _Node, why: str) -> None:
        """These channels no longer flow from ``node``: re-place them (and resync their feeds)."""
        lost = 0
        for channel in list(channels):
            if channel.node is not node:
                continue
            if channel.confirmed and channel.feed is not None:
                channel.lost = True
                lost += 1
            channel.node = None
            channel.confirmed = False
            node.channels.discard(channel)
        if lost:
            self._log_lost(node.addr, lost, why)
        self._refresh_now = True
        self._work.set()
        self._update_state()

    def _log_lost(self, addr: str, n: int, why: str) -> None:
        """One warning per fault: losses on one node within 100 ms are summed (pushes come one by one)."""
        count, first_why = self._lost_log.get(addr, (0, why))
        self._lost_log[addr] = (count + n, first_why)
        if self._lost_flush is None:
            self._lost_flush = asyncio.get_running_loop().call_later(0.1, self._flush_lost_log)

    def _flush_lost_log(self) -> None:
        self._lost_flush = None
        for addr, (n, why) in self._lost_log.items():
            log.warning("pub/sub: %d channel(s) lost on %s (%s); re-placing them on the slot owner", n, addr, why)
        self._lost_log.clear()

    def _node(self, addr: str) -> _Node:
        node = self._nodes.get(addr)
        if node is None:
            node = self._nodes[addr] = _Node(addr)
        return node

    # -- one node's connection ---------------------------------------------------------------------

    def _send(self, node: _Node, command: tuple[Any, ...], expect: tuple[Any, ...]) -> None:
        node.outbox.append(command)
        node.expected.append(expect)
        node.outbox_ready.set()

    async def _serve(self, node: _Node) -> None:
        """Connect to ``node``, subscribe what is placed on it, and read until the connection fails."""
        conn = Connection(host=node.host, port=node.port, protocol=2, socket_connect_timeout=self._health_timeout)
        node.conn = conn
        node.expected.clear()
        node.outbox.clear()
        helpers: list[asyncio.Task[None]] = []
        why = "connection closed"
        try:
            async with asyncio.timeout(self._health_timeout):
                await conn.connect()
                # Never subscribe at a replica (a stale slot table can name one): Valkey drops a
                # replica's shard subscribers at promotion, and a partitioned replica goes quiet.
                await conn.send_command("ROLE", check_health=False)
                role = await conn.read_response(timeout=math.inf)
            if not role or role[0] not in (b"master", "master"):
                self._refresh_now = True
                raise redis_errors.ConnectionError(f"{node.addr} is not a master")
            node.last_reply = time.monotonic()
            node.backoff = _BACKOFF_FIRST
            node.up = True
            if self._metrics is not None:
                self._metrics.node_connected(node.addr, True)
            for channel in list(node.channels):
                self._send(node, ("SSUBSCRIBE", channel.name), ("sub", channel, channel.gen))
            helpers = [
                asyncio.create_task(self._write_loop(node, conn)),
                asyncio.create_task(self._health_loop(node, conn)),
            ]
            while True:
                try:
                    msg = await conn.read_response(timeout=math.inf, disconnect_on_error=True)
                except redis_errors.ResponseError as exc:
                    node.last_reply = time.monotonic()
                    if not self._on_error(node, exc):
                        why = f"unexpected error reply: {exc}"
                        break
                    continue
                node.last_reply = time.monotonic()
                if not self._dispatch(node, msg):
                    # The order of replies is lost: start this connection over (its channels are
                    # re-placed and resynced), rather than trust a confirmation we can't attribute.
                    why = f"unexpected reply {msg!r:.60}"
                    break
        except asyncio.CancelledError:
            raise
        except _NETWORK_ERRORS as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a bug must not end live delivery: drop the connection, re-place
            log.exception("pub/sub reader for %s failed", node.addr)
            why = type(exc).__name__
        finally:
            for task in helpers:
                task.cancel()
            if not node.up:  # never got going: wait a little longer before the next attempt
                node.retry_at = time.monotonic() + node.backoff
                node.backoff = min(node.backoff * 2, _BACKOFF_MAX)
            node.failed_at = time.monotonic()
            await self._node_down(node, conn, why)

    async def _node_down(self, node: _Node, conn: Connection, why: str) -> None:
        if node.conn is conn:
            node.conn = None
        was_up, node.up = node.up, False
        node.expected.clear()
        node.outbox.clear()
        await _disconnect(conn)
        if was_up and self._metrics is not None:
            self._metrics.node_connected(node.addr, False)
        if self._closing:
            return
        if node.channels:
            self._lose(node.channels, node, why)
        self._update_state()

    async def _write_loop(self, node: _Node, conn: Connection) -> None:
        """Send queued commands in order, several per socket write."""
        while True:
            await node.outbox_ready.wait()
            node.outbox_ready.clear()
            commands, node.outbox = node.outbox, []
            if commands:
                try:
                    await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                except _NETWORK_ERRORS:
                    await _disconnect(conn)  # the reader sees it and the node goes down
                    return

    async def _health_loop(self, node: _Node, conn: Connection) -> None:
        """PING; a node that stops answering (frozen, partitioned) gets its connection dropped."""
        while True:
            await asyncio.sleep(self._health_interval)
            if time.monotonic() - node.last_reply > self._health_timeout:
                for _ in range(3):  # a busy loop delays the reader too: let it drain first
                    await asyncio.sleep(0)
                if time.monotonic() - node.last_reply <= self._health_timeout:
                    continue
                log.warning("pub/sub connection to %s silent for %.1fs; dropping it", node.addr, self._health_timeout)
                await _disconnect(conn)
                return
            if not node.channels and all(e[0] == "ping" for e in node.expected):
                await _disconnect(conn)  # nothing placed here any more: close the idle connection
                return
            if not any(e[0] == "ping" for e in node.expected):
                self._send(node, ("PING",), ("ping",))

    def _dispatch(self, node: _Node, msg: Any) -> bool:
        """Handle one message; False when the reply order is lost (the connection is then reset)."""
        if isinstance(msg, list) and msg:
            kind = msg[0]
            if kind == b"smessage":
                self._deliver(msg[1], msg[2])
                return True
            if kind == b"ssubscribe":
                head = node.expected.popleft() if node.expected else None
                if head is None or head[0] != "sub" or head[1].name != msg[1]:
                    return False
                self._confirmed(node, head[1], head[2])
                return True
            if kind == b"sunsubscribe":
                head = node.expected[0] if node.expected else None
                if head is not None and head[0] == "unsub" and head[1] == msg[1]:
                    node.expected.popleft()  # the reply to our own SUNSUBSCRIBE
                    return True
                channel = self._channels.get(msg[1])
                if channel is not None and channel.node is node:
                    self._lose([channel], node, "the node unsubscribed it (failover or slot migration)")
                return True
            if kind == b"pong":
                return self._pong(node)
        if msg in (b"PONG", "PONG"):
            return self._pong(node)
        return False

    def _pong(self, node: _Node) -> bool:
        head = node.expected.popleft() if node.expected else None
        return head is not None and head[0] == "ping"

    def _on_error(self, node: _Node, exc: redis_errors.ResponseError) -> bool:
        """An error reply answers the oldest outstanding command; False if none was expecting one."""
        head = node.expected.popleft() if node.expected else None
        if head is None or head[0] == "ping":
            return False
        if head[0] == "sub":
            channel: _Channel = head[1]
            if channel.node is node and channel.gen == head[2]:
                # Refused (MOVED, CLUSTERDOWN, …): re-placed after a refresh. A first subscribe's
                # waiter stays, and is resolved once the new owner confirms.
                text = str(exc)
                moved = text.split()
                if len(moved) == 3 and moved[0] == "MOVED":
                    self._learn(int(moved[1]), moved[2])
                self._lose([channel], node, f"SSUBSCRIBE refused: {text}")
        # ("unsub", name): a refused SUNSUBSCRIBE (MOVED) leaves nothing subscribed here either.
        return True

    def _confirmed(self, node: _Node, channel: _Channel, gen: int) -> None:
        if channel.node is not node or channel.gen != gen or not channel.wanted:
            return  # an older placement (unsubscribed or moved since): the reply is stale
        channel.confirmed = True
        while channel.waiters:
            waiter = channel.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if channel.lost:
            channel.lost = False
            if self._metrics is not None:
                self._metrics.channels_replaced(node.addr, 1)
            assert channel.feed is not None
            self._on_resync([channel.feed])
        if channel.probe_of is not None:
            self._update_state()

    def _deliver(self, name: bytes, data: bytes) -> None:
        channel = self._channels.get(name)
        if channel is None or not channel.wanted:
            return
        if channel.feed is not None:
            self._on_event(channel.feed, data)
        elif (probe := self._probes.get(data)) is not None and not probe.done():
            probe.set_result(None)

    def _update_state(self) -> None:
        probes = [c for c in self._channels.values() if c.probe_of is not None and c.wanted]
        up = (
            self._table_ok
            and bool(probes)
            and {c.probe_of for c in probes} >= set(self._masters)
            and all(c.confirmed and c.node is not None and c.node.up for c in probes)
        )
        if up:
            self._ready.set()
        if up != self._up:
            self._up = up
            self._on_state(up)

    # -- topology -----------------------------------------------------------------------------------

    def _owner(self, slot: int) -> str | None:
        i = bisect.bisect_right(self._starts, slot) - 1
        if i >= 0 and slot <= self._ranges[i][0]:
            return self._ranges[i][1]
        return None

    def _learn(self, slot: int, addr: str) -> None:
        """A ``MOVED`` names the slot's owner: use it until the next refresh says otherwise."""
        i = bisect.bisect_right(self._starts, slot) - 1
        if i >= 0 and self._starts[i] == slot == self._ranges[i][0]:
            self._ranges[i] = (slot, addr)
            return
        ranges = [(first, last, master) for first, (last, master) in zip(self._starts, self._ranges, strict=True)]
        split: list[tuple[int, int, str]] = []
        for first, last, master in ranges:
            if first <= slot <= last:
                if first < slot:
                    split.append((first, slot - 1, master))
                split.append((slot, slot, addr))
                if slot < last:
                    split.append((slot + 1, last, master))
            else:
                split.append((first, last, master))
        if not any(first <= slot <= last for first, last, _ in ranges):
            split.append((slot, slot, addr))
            split.sort()
        self._starts = [r[0] for r in split]
        self._ranges = [(r[1], r[2]) for r in split]

    async def _refresh_loop(self) -> None:
        """Re-read the slot table now and then: catches owners that changed without a push."""
        while not self._closing:
            await asyncio.sleep(self._refresh_interval)
            self._refresh_now = True
            self._work.set()

    def _candidates(self) -> list[str]:
        """Nodes to ask for the slot table: healthy known nodes first; failed or silent ones last."""
        now = time.monotonic()

        def suspect(addr: str) -> bool:
            node = self._nodes.get(addr)
            if node is None:
                return False
            return node.bad or (node.up and now - node.last_reply > 1.5 * self._health_interval)

        known = list(dict.fromkeys([*self._masters, *self._replicas, *self._seeds]))
        return sorted(known, key=suspect)

    async def _refresh(self) -> None:
        """Read ``CLUSTER SLOTS`` from the first node that answers; apply it."""
        self._refresh_now = False
        errors = []
        for addr in self._candidates():
            host, _, port = addr.rpartition(":")
            conn = Connection(host=host, port=int(port), protocol=2, socket_connect_timeout=0.5)
            try:
                async with asyncio.timeout(0.5):
                    await conn.connect()
                    await conn.send_command("CLUSTER", "SLOTS", check_health=False)
                    reply = await conn.read_response(timeout=math.inf)
            except (*_NETWORK_ERRORS, redis_errors.ResponseError) as exc:
                errors.append(f"{addr}: {type(exc).__name__}")
                if addr in self._nodes:
                    self._nodes[addr].failed_at = max(self._nodes[addr].failed_at, time.monotonic() - _BAD_FOR / 2)
                continue
            finally:
                await _disconnect(conn)
            self._refresh_failing = False
            self._apply(reply, addr)
            return
        if not self._refresh_failing:  # once per outage, not per retry
            log.warning("pub/sub: no cluster node answered CLUSTER SLOTS (%s)", "; ".join(errors[:6]))
        self._refresh_failing = True
        self._refresh_now = True

    def _apply(self, reply: list[Any], source: str) -> None:
        """Install a ``CLUSTER SLOTS`` reply; move channels whose slot changed owner."""
        table, replicas = _parse_slots(reply, source.rpartition(":")[0])
        covered = sum(last - first + 1 for first, last, _ in table)
        self._table_ok = covered == 16384
        old_masters = self._masters
        masters: dict[str, int] = {}
        for first, last, master in table:
            masters[master] = masters.get(master, 0) + last - first + 1
        self._starts = [r[0] for r in table]
        self._ranges = [(r[1], r[2]) for r in table]
        self._masters = masters
        self._replicas = list(dict.fromkeys(replicas))
        if masters != old_masters:
            for addr in old_masters.keys() - masters.keys():
                if old_masters:
                    log.warning("pub/sub: %s is no longer a master", addr)
                if self._metrics is not None:
                    self._metrics.failover_seen(addr)
                    self._metrics.node_slots(addr, 0)
            if self._metrics is not None:
                for addr, n in masters.items():
                    self._metrics.node_slots(addr, n)
        moved: dict[_Node, list[_Channel]] = {}
        for channel in self._channels.values():
            if channel.node is not None and self._owner(channel.slot) != channel.node.addr:
                moved.setdefault(channel.node, []).append(channel)
        for node, channels in moved.items():
            for channel in channels:
                if node.up:  # it may still be subscribed there (Redis 7 keeps a promoted replica's)
                    self._send(node, ("SUNSUBSCRIBE", channel.name), ("unsub", channel.name))
            self._lose(channels, node, "its slot has a new owner")
        self._sync_probes()
        self._update_state()


def _parse_slots(reply: list[Any], default_host: str) -> tuple[list[tuple[int, int, str]], list[str]]:
    """``CLUSTER SLOTS`` → sorted ``(first, last, master address)`` ranges, and the replicas."""

    def addr(entry: list[Any]) -> str:
        host = entry[0].decode() if isinstance(entry[0], bytes) else str(entry[0])
        return f"{host or default_host}:{int(entry[1])}"

    table: list[tuple[int, int, str]] = []
    replicas: list[str] = []
    for entry in reply:
        table.append((int(entry[0]), int(entry[1]), addr(entry[2])))
        replicas.extend(addr(r) for r in entry[3:])
    table.sort()
    return table, replicas


def _addr_of(seed: str) -> str:
    """``redis://host:port/0`` or ``host:port`` → ``host:port``."""
    if "://" in seed:
        parts = urlsplit(seed)
        return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
    host, _, port = seed.rpartition(":")
    return f"{host or '127.0.0.1'}:{int(port or 6379)}"


def _fail_waiters(channel: _Channel) -> None:
    while channel.waiters:
        waiter = channel.waiters.popleft()
        if not waiter.done():
            waiter.cancel()


async def _disconnect(conn: Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.disconnect()


__all__ = ["ClusterBroker", "ClusterStats"]
