"""Broker: this process's one pub/sub connection to Redis.

It subscribes (sharded pub/sub: ``SSUBSCRIBE``) only to the feeds this process's clients watch,
hands every change event to ``on_event(feed, data)``, and watches its own health: a PING every
``health_interval`` seconds must be answered within ``health_timeout``, or the connection is
treated as dead. After any reconnect it re-subscribes everything and calls ``on_resync()`` so the
hub can fetch from the change log whatever was published while the connection was down —
redis-py's own ``PubSub`` re-subscribes silently and loses those events, which is why this module
drives a raw connection itself.

Subscribe and unsubscribe commands leave through one ordered outbox, so "unsubscribe X, then
subscribe X again" reaches Redis in that order, and confirmations resolve waiters first-in
first-out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection, ConnectionPool

from .errors import Unavailable
from .keys import Keys

log = logging.getLogger("feedserver.broker")

_RESUBSCRIBE_CHUNK = 500
_SYNC_MARK = b"feedserver-sync"
_NETWORK_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, EOFError)


def _helper_done(task: asyncio.Task[None], conn: AbstractConnection) -> None:
    """A helper of a pub/sub connection ended: retrieve its outcome (no "Task exception was never
    retrieved"); an unexpected error is logged once and drops the connection, so it is re-made."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, _NETWORK_ERRORS):
        log.warning("pub/sub %s failed (%r); reconnecting", task.get_name(), exc)
        asyncio.ensure_future(conn.disconnect()).add_done_callback(_ignore_outcome)


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Broker:
    """Sharded pub/sub reader with health checks, reconnects and resync notifications.

    Implements ``backends.base.Broker`` for one Redis (or the master a Sentinel group names).
    ``connections`` is a URL or a connection pool whose ``make_connection()`` connects to the
    current master (a ``SentinelConnectionPool`` asks the Sentinels on every connect, so a
    reconnect after a failover lands on the new master). ``publish(channel, payload)`` is what
    ``check_ready`` publishes its probe with (the store's command path).
    """

    def __init__(
        self,
        connections: str | ConnectionPool,
        keys: Keys,
        on_event: Callable[[str, bytes], None],
        on_resync: Callable[[Collection[str] | None], None],
        *,
        subscribe_timeout: float = 2.0,
        health_interval: float = 1.0,
        health_timeout: float = 3.0,
        on_state: Callable[[bool], None] | None = None,
        publish: Callable[[str, bytes], Awaitable[Any]] | None = None,
    ) -> None:
        # Reads block for as long as it takes (timeout=math.inf below): the health check PINGs and
        # drops a silent connection, so no per-read timer (redis-py's default) is armed.
        if isinstance(connections, str):
            connections = ConnectionPool.from_url(connections, socket_connect_timeout=health_timeout, protocol=2)
        self._pool = connections
        self._publish = publish
        self._keys = keys
        self._on_event = on_event
        self._on_resync = on_resync
        self._on_state = on_state or (lambda up: None)
        self._subscribe_timeout = subscribe_timeout
        self._health_interval = health_interval
        self._health_timeout = health_timeout
        self._feeds: set[str] = set()
        self._waiters: dict[bytes, collections.deque[asyncio.Future[None]]] = {}
        self._outbox: list[tuple[Any, ...]] = []
        self._outbox_ready = asyncio.Event()
        self._conn: AbstractConnection | None = None
        self._connected = asyncio.Event()
        self._last_reply = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connects = 0
        # /readyz proves the whole path: a publish must come back on this connection.
        self._probe_channel = keys.readiness_channel(secrets.token_hex(6))
        self._probes: dict[bytes, asyncio.Future[None]] = {}

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established after the first connect."""
        return max(self._connects - 1, 0)

    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is up and subscribed."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start the reader; returns once connected (or after ``subscribe_timeout``)."""
        self._task = asyncio.create_task(self._run(), name="broker")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._subscribe_timeout):
                await self._connected.wait()

    async def close(self) -> None:
        """Stop the reader and close the connection."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_connection()
        await self._pool.disconnect()

    async def subscribe(self, feed: str) -> None:
        """Subscribe to ``feed``'s channel; return once Redis confirmed it (503 if it can't)."""
        self._feeds.add(feed)
        channel = self._keys.channel(feed).encode()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, collections.deque()).append(waiter)
        if self._connected.is_set():
            self._queue("SSUBSCRIBE", channel)
        # Otherwise the reconnect subscribes every wanted feed and resolves the waiter.
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                await waiter
        except TimeoutError:
            waiters = self._waiters.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[channel]
                    # Nobody else wants it (the hub drops the room whose join failed): don't
                    # re-subscribe it on the next reconnect. A late confirmation is harmless.
                    self._feeds.discard(feed)
            raise Unavailable("live events are unavailable (Redis pub/sub)", retry_after=1.0) from None

    def unsubscribe(self, feed: str) -> None:
        """Drop ``feed``'s channel (a dead connection has no subscriptions anyway)."""
        self._feeds.discard(feed)
        if self._connected.is_set():
            self._queue("SUNSUBSCRIBE", self._keys.channel(feed))

    async def check_ready(self, timeout: float) -> None:
        """Publish a probe (with ``publish``) and wait until it arrives back here (503 otherwise)."""
        if self._publish is None:
            raise Unavailable("no publisher configured for the pub/sub round trip", retry_after=1.0)
        await self.round_trip(self._publish, timeout)

    async def round_trip(self, publish: Callable[[str, bytes], Awaitable[Any]], timeout: float) -> None:
        """Publish a nonce with ``publish`` and wait until it arrives back here (503 otherwise)."""
        if not self._connected.is_set():
            raise Unavailable("pub/sub connection is down", retry_after=1.0)
        nonce = secrets.token_hex(8).encode()
        arrived = self._probes[nonce] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await publish(self._probe_channel, nonce)
                await arrived
        except TimeoutError:
            raise Unavailable("pub/sub round trip timed out", retry_after=1.0) from None
        finally:
            self._probes.pop(nonce, None)

    def _queue(self, *command: Any) -> None:
        self._outbox.append(command)
        self._outbox_ready.set()

    async def _run(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                await self._connect()
                delay = 0.05
                await self._serve()
            except asyncio.CancelledError:
                raise
            except (*_NETWORK_ERRORS, TimeoutError) as exc:
                if self._connected.is_set() or self._connects == 0:
                    log.warning("pub/sub connection lost: %s", exc or type(exc).__name__)
            except Exception:  # a bug must not end live delivery for the whole process
                log.exception("pub/sub reader failed; reconnecting")
            await self._drop_connection()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _connect(self) -> None:
        """Connect, subscribe every wanted feed, and wait until Redis confirmed all of them.

        Only then is the change log read (``on_resync``): anything published from here on
        arrives on this connection, anything before is in the log — no window in between.
        """
        conn = self._pool.make_connection()
        self._conn = conn
        self._outbox.clear()  # superseded by the full re-subscription below
        await conn.connect()
        self._last_reply = time.monotonic()
        feeds = list(self._feeds)
        await conn.send_command("SSUBSCRIBE", self._probe_channel, check_health=False)
        for i in range(0, len(feeds), _RESUBSCRIBE_CHUNK):
            channels = [self._keys.channel(f) for f in feeds[i : i + _RESUBSCRIBE_CHUNK]]
            await conn.send_command("SSUBSCRIBE", *channels, check_health=False)
        await conn.send_command("PING", _SYNC_MARK, check_health=False)
        async with asyncio.timeout(self._health_timeout + len(feeds) / 10_000):
            while True:
                msg = await conn.read_response(timeout=math.inf, disconnect_on_error=True)
                if msg == _SYNC_MARK or (isinstance(msg, list) and msg[:2] == [b"pong", _SYNC_MARK]):
                    break
                if isinstance(msg, list) and msg and msg[0] in (b"smessage", b"message"):
                    self._dispatch(msg)
        if self._connects:
            log.warning("pub/sub reconnected; re-syncing %d feeds from the change log", len(feeds))
        self._connects += 1
        self._connected.set()
        snapshot = {self._keys.channel(f).encode() for f in feeds}
        for channel in list(self._waiters):
            if channel in snapshot:
                for waiter in self._waiters.pop(channel):
                    if not waiter.done():
                        waiter.set_result(None)
            else:  # wanted while this connect was under way: one command per waiter (FIFO)
                for _ in self._waiters[channel]:
                    self._queue("SSUBSCRIBE", channel)
        self._on_state(True)
        self._on_resync(None)

    async def _drop_connection(self) -> None:
        was_up = self._connected.is_set()
        self._connected.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect()
        if was_up:
            self._on_state(False)

    async def _serve(self) -> None:
        conn = self._conn
        assert conn is not None
        helpers = [
            asyncio.create_task(self._health_loop(conn), name="broker-health"),
            asyncio.create_task(self._write_loop(conn), name="broker-writer"),
        ]
        for task in helpers:
            task.add_done_callback(lambda task: _helper_done(task, conn))
        try:
            while True:
                msg = await conn.read_response(timeout=math.inf, disconnect_on_error=True)
                self._last_reply = time.monotonic()
                if isinstance(msg, list) and msg:
                    self._dispatch(msg)
        finally:
            for task in helpers:
                task.cancel()

    async def _write_loop(self, conn: AbstractConnection) -> None:
        """Send queued (un)subscribe commands in order, several per write."""
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            commands, self._outbox = self._outbox, []
            if commands:
                try:
                    await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                except _NETWORK_ERRORS:
                    with contextlib.suppress(Exception):
                        await conn.disconnect()  # the reader sees it and reconnects
                    return

    def _dispatch(self, msg: list[Any]) -> None:
        kind = msg[0]
        if kind == b"smessage" or kind == b"message":
            feed = self._keys.feed_of_channel(msg[1].decode())
            if feed is not None:
                self._on_event(feed, msg[2])
            elif (probe := self._probes.get(msg[2])) is not None and not probe.done():
                probe.set_result(None)
        elif kind == b"ssubscribe" or kind == b"subscribe":
            waiters = self._waiters.get(msg[1])
            if waiters:
                waiter = waiters.popleft()
                if not waiters:
                    del self._waiters[msg[1]]
                if not waiter.done():
                    waiter.set_result(None)

    async def _health_loop(self, conn: AbstractConnection) -> None:
        """PING on the subscribed connection; a silent Redis (paused, partitioned) gets it dropped."""
        while True:
            await asyncio.sleep(self._health_interval)
            if time.monotonic() - self._last_reply > self._health_timeout:
                # A busy event loop delays the reader as much as this check: give the reader a
                # turn at whatever is already buffered before calling the connection dead.
                for _ in range(3):
                    await asyncio.sleep(0)
                if time.monotonic() - self._last_reply <= self._health_timeout:
                    continue
                log.warning("pub/sub connection silent for %.1fs; reconnecting", self._health_timeout)
                with contextlib.suppress(Exception):
                    await conn.disconnect()
                return
            self._queue("PING")
