"""The WebSocket endpoint ``/v1/ws`` (SPEC §5), as a plain ASGI app.

Per connection: a reader (this coroutine) that handles client messages one by one, and a writer
task that drains a bounded queue. The hub never awaits a client: it appends frames to the queue
(``Connection.send``); when the queue is full the connection is closed with 4008 and, if even the
close frame cannot be written within ``close_timeout`` (a peer that stopped reading), the
transport is aborted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from . import protocol
from .acl import Principal
from .auth import Authenticator
from .errors import FeedError, Forbidden, Invalid, RateLimited, Unauthorized
from .metrics import Metrics
from .models import dumps
from .ratelimit import RateLimit
from .service import FeedService
from .wsproto import DIRECT_SEND, FrameSink

log = logging.getLogger("feedserver.ws")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CLOSE_NORMAL = 1000
CLOSE_UNAUTHENTICATED = 4001
CLOSE_SLOW_CONSUMER = 4008
CLOSE_RATE_LIMITED = 4029
#: Publishes of one connection being stored at once; the reader waits when this many are open.
MAX_PIPELINED_PUBLISHES = 64


class Connection:
    """One client connection: the hub's ``Peer``.

    Frames are written straight to the socket while it accepts data (as ``websockets.broadcast``
    does), so a burst fanned out in one loop tick costs no task switches; only when the socket
    backs up do frames wait in a bounded queue drained by ``writer()``. The queue therefore holds
    exactly what a slow client has not taken, and overflowing it closes the connection (4008).
    """

    __slots__ = (
        "_send",
        "_queue",
        "_limit",
        "_wake",
        "_direct",
        "_close_timeout",
        "_metrics",
        "close_code",
        "close_reason",
        "closing",
        "client",
        "__weakref__",
    )

    def __init__(
        self,
        send: Send,
        *,
        limit: int,
        close_timeout: float,
        metrics: Metrics,
        client: str,
        sink: FrameSink | None = None,
    ) -> None:
        self._send = send
        self._queue: collections.deque[bytes] = collections.deque()
        self._limit = limit
        self._wake = asyncio.Event()
        self._close_timeout = close_timeout
        self._metrics = metrics
        self._direct = sink
        self.closing = False
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""
        self.client = client

    @property
    def direct(self) -> bool:
        """True when frames can be written without going through ASGI ``send``."""
        return self._direct is not None

    def send(self, frame: bytes) -> None:
        """Write or queue a frame; never blocks. A full queue closes the connection with 4008."""
        if self.closing:
            return
        queue = self._queue
        if not queue and self._direct is not None and self._direct.send_texts((frame,)):
            return
        if len(queue) >= self._limit:
            self._metrics.drops.inc()
            log.warning("%s: slow consumer, %d frames queued; closing with 4008", self.client, len(queue))
            queue.clear()
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue overflowed")
            return
        queue.append(frame)
        self._wake.set()

    def send_all(self, frames: list[bytes]) -> None:
        """``send`` each frame, in one socket write when the socket takes them at once."""
        if self.closing or not frames:
            return
        if not self._queue and self._direct is not None and self._direct.send_texts(frames):
            return
        for frame in frames:
            self.send(frame)

    def close(self, code: int, reason: str = "") -> None:
        """Close after the frames already queued (4008 drops them); abort if the peer won't read."""
        if self.closing:
            return
        self.closing = True
        self.close_code, self.close_reason = code, reason
        self._wake.set()
        if self._direct is not None:
            asyncio.get_running_loop().call_later(self._close_timeout, self._direct.abort_if_stuck)

    async def writer(self) -> None:
        """Drain the queue (the socket was full) through ASGI ``send``; then send the close frame."""
        send, queue = self._send, self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                # Peek, send, then pop: while the send waits for the socket, send() above sees a
                # non-empty queue and appends behind this frame instead of overtaking it.
                await send({"type": "websocket.send", "text": queue[0].decode()})
                if queue:
                    queue.popleft()
            if self.closing:
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": self.close_code, "reason": self.close_reason})
                return


class WebSocketEndpoint:
    """ASGI app for ``/v1/ws``."""

    def __init__(
        self,
        service: FeedService,
        auth: Authenticator,
        metrics: Metrics,
        *,
        allowed_origins: list[str],
        rate_limit: RateLimit | None = None,
        queue_size: int,
        auth_timeout: float,
        close_timeout: float,
    ) -> None:
        self.service = service
        self.auth = auth
        self.metrics = metrics
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.rate_limit = rate_limit
        self.queue_size = queue_size
        self.auth_timeout = auth_timeout
        self.close_timeout = close_timeout
        self.connections: set[Connection] = set()
        self._warned_slow_path = False

    def origin_allowed(self, headers: Headers) -> bool:
        """Browsers send ``Origin``; only the allowlist (or, when it is empty, the same host) may connect."""
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser: services and CLI clients send no Origin
        origin = origin.rstrip("/").lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        if not self.allowed_origins:
            return urlsplit(origin).netloc == (headers.get("host") or "").lower()
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        client = "{}:{}".format(*tuple(scope.get("client") or ("?", "?")))
        if (await receive())["type"] != "websocket.connect":
            return
        if not self.origin_allowed(headers):
            log.info("%s: refused WebSocket from origin %s", client, headers.get("origin"))
            await _reject(scope, send, 403, "origin not allowed")
            return
        await send({"type": "websocket.accept"})
        sink = scope.get("extensions", {}).get(DIRECT_SEND)
        if sink is None and not self._warned_slow_path:
            self._warned_slow_path = True
            log.warning("the server offers no %s: WebSocket frames go through ASGI send (slower fan-out)", DIRECT_SEND)
        conn = Connection(
            send,
            limit=self.queue_size,
            close_timeout=self.close_timeout,
            metrics=self.metrics,
            client=client,
            sink=sink,
        )
        self.connections.add(conn)
        self.metrics.connections.inc()
        writer = asyncio.create_task(conn.writer(), name=f"ws-writer {client}")
        session = Session(self, conn)
        try:
            await session.run(headers, receive)
        finally:
            with contextlib.suppress(TimeoutError):  # answer publishes already being stored
                async with asyncio.timeout(self.close_timeout):
                    await session.drain()
            self.service.hub.drop_peer(conn)
            session.cancel_expiry()
            if not conn.closing:
                conn.close(CLOSE_NORMAL)
            try:
                async with asyncio.timeout(self.close_timeout):
                    await writer
            except (TimeoutError, Exception):
                writer.cancel()
            self.connections.discard(conn)
            self.metrics.connections.dec()

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection (graceful shutdown)."""
        for conn in list(self.connections):
            conn.close(code, reason)


async def _reject(scope: Scope, send: Send, status: int, detail: str) -> None:
    """Refuse the handshake with an HTTP status (and a problem body where the server allows it)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = dumps(
            {
                "type": "urn:feedserver:problem:forbidden",
                "title": "Forbidden",
                "status": status,
                "detail": detail,
            }
        )
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/problem+json")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


class Session:
    """The reader side of one connection: authentication and command dispatch."""

    def __init__(self, endpoint: WebSocketEndpoint, conn: Connection) -> None:
        self.endpoint = endpoint
        self.service = endpoint.service
        self.conn = conn
        self.principal: Principal = endpoint.auth.anonymous
        self._expiry: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._acks: list[bytes] = []
        self._limit_key = f"ws:{id(self)}"
        self._slots = asyncio.Semaphore(MAX_PIPELINED_PUBLISHES)

    async def run(self, headers: Headers, receive: Receive) -> None:
        """Authenticate (header or first message, 4001 after ``auth_timeout``), then serve messages."""
        conn = self.conn
        has_credentials = "authorization" in headers or "x-api-key" in headers
        if has_credentials:
            try:
                self._adopt(await self.endpoint.auth.from_headers(headers))
            except Unauthorized as exc:
                conn.close(exc.close_code or CLOSE_UNAUTHENTICATED, exc.detail[:120])
                return
        else:
            try:
                async with asyncio.timeout(self.endpoint.auth_timeout):
                    message = await receive()
            except TimeoutError:
                conn.close(CLOSE_UNAUTHENTICATED, "no auth message within the auth timeout")
                return
            if not await self._handle_message(message):
                return
        while not conn.closing:
            if not await self._handle_message(await receive()):
                return

    def _reauthenticate(self, principal: Principal, ref: protocol.Ref) -> None:
        """An ``auth`` message (SPEC §5 "Re-authentication").

        The first one authenticates an anonymous connection. Later ones may only refresh the same
        ``sub``: the new rights replace the old at once, subscriptions they no longer allow end
        with ``unsubscribed`` (reason ``forbidden``), and the expiry close follows the new token.
        A token for another ``sub`` is refused and changes nothing: a connection never collects
        the rights of several principals, nor sheds the expiry of the first.
        """
        current = self.principal
        if current.authenticated and principal.sub != current.sub:
            log.info("%s: refused re-authentication as another sub", self.conn.client)
            self.conn.send(protocol.error(Forbidden("re-authentication may only refresh the same sub"), ref))
            return
        self._adopt(principal)
        for feed in self.service.reauthorize(self.conn, principal):
            self.conn.send(protocol.unsubscribed(feed, reason="forbidden"))
        self.conn.send(protocol.welcome(principal.sub, ref))

    def _adopt(self, principal: Principal) -> None:
        """Take ``principal`` as the connection's caller and arm the close at its token's expiry.

        A principal without ``exp`` (only with ``[auth] require_exp = false``) keeps the timer
        of an earlier token: replacing credentials never cancels an expiry.
        """
        self.principal = principal
        if principal.expires_at is not None:
            self.cancel_expiry()
            delay = max(principal.expires_at - time.time(), 0)
            self._expiry = asyncio.get_running_loop().call_later(
                delay, self.conn.close, CLOSE_UNAUTHENTICATED, "token expired"
            )

    def cancel_expiry(self) -> None:
        """Forget the token-expiry timer."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    async def _handle_message(self, message: dict[str, Any]) -> bool:
        """Handle one ASGI event; False once the connection is over."""
        if message["type"] == "websocket.disconnect":
            return False
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        if self.endpoint.rate_limit is not None:
            try:
                self.endpoint.rate_limit.check(self._limit_key)
            except RateLimited as exc:  # a flooding client is cut off (SPEC §5: 4029)
                self.conn.send(protocol.error(exc, protocol.peek_ref(data)))
                self.conn.close(exc.close_code or CLOSE_RATE_LIMITED, "rate limited")
                return False
        try:
            command = protocol.parse_command(data)
        except FeedError as exc:
            self.conn.send(protocol.error(exc, protocol.peek_ref(data)))
            return not self.conn.closing
        if isinstance(command, protocol.Publish):
            # Publishes are pipelined: the next message is read while this one is stored. Their
            # writes enter the store's per-tick pipeline in arrival order, so they stay in order.
            await self._slots.acquire()
            task = asyncio.create_task(self._run(command))
            self._inflight.add(task)
            task.add_done_callback(self._publish_done)
        else:
            await self.drain()  # any other command sees the effect of earlier publishes
            await self._run(command)
        return not self.conn.closing

    def _ack(self, frame: bytes) -> None:
        """Send an ack of a pipelined publish: the acks completed in one tick leave in one write."""
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._flush_acks)
        self._acks.append(frame)

    def _flush_acks(self) -> None:
        frames, self._acks = self._acks, []
        self.conn.send_all(frames)

    def _publish_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()

    async def drain(self) -> None:
        """Wait until every pipelined publish of this connection has been answered."""
        while self._inflight:
            await asyncio.wait(list(self._inflight))

    async def _run(self, command: Any) -> None:
        """Execute one command; errors become ``error`` replies and the connection stays open."""
        try:
            await self._dispatch(command)
        except FeedError as exc:
            self.conn.send(protocol.error(exc, command.ref))
        except Exception:
            log.exception("%s: error handling a message", self.conn.client)
            self.conn.send(protocol.error(FeedError("internal error"), command.ref))

    async def _dispatch(self, command: Any) -> None:
        conn, ref = self.conn, command.ref
        if isinstance(command, protocol.Auth):
            try:
                principal = await self.endpoint.auth.verify_token(command.token)
            except Unauthorized as exc:  # a bad token ends the connection (SPEC §5: 4001)
                conn.send(protocol.error(exc, ref))
                conn.close(exc.close_code or CLOSE_UNAUTHENTICATED, exc.detail[:120])
                return
            self._reauthenticate(principal, ref)
        elif isinstance(command, protocol.Subscribe):
            since = (command.since.epoch, command.since.seq) if command.since else None
            await self.service.subscribe(conn, self.principal, command.feed, since, ref)
        elif isinstance(command, protocol.Unsubscribe):
            self.service.unsubscribe(conn, command.feed)
            conn.send(protocol.unsubscribed(command.feed, ref))
        elif isinstance(command, protocol.Publish):
            items = command.items()
            bodies = await self.service.post(self.principal, command.feed, items, batch=command.activities is not None)
            self._ack(protocol.ack(bodies, ref))
        elif isinstance(command, protocol.Update):
            body = await self.service.replace(
                self.principal, command.feed, command.id, command.activity, if_match=command.version
            )
            conn.send(protocol.ack([body], ref))
        elif isinstance(command, protocol.Patch):
            patch = {"set": command.set, "unset": command.unset}
            body = await self.service.patch(self.principal, command.feed, command.id, patch, if_match=command.version)
            conn.send(protocol.ack([body], ref))
        elif isinstance(command, protocol.Delete):
            activity_id, foreign_id = command.target()
            if activity_id is not None:
                await self.service.delete(self.principal, command.feed, activity_id, if_match=command.version)
                removed = 1
            else:
                assert foreign_id is not None
                removed = await self.service.delete_foreign_id(self.principal, command.feed, foreign_id)
            conn.send(protocol.ack([], ref, removed=removed))
        elif isinstance(command, protocol.Ping):
            conn.send(protocol.pong(ref))
        else:  # pragma: no cover - parse_command only returns registered types
            raise Invalid(f"unsupported message {type(command).__name__}")
