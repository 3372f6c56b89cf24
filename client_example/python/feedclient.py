"""feedclient — an asyncio client for the feed server's WebSocket protocol (``/v1/ws``).

Built on the ``websockets`` library; nothing else outside the standard library. Copy this one file
into a project, or put its directory on ``sys.path``.

::

    from feedclient import FeedClient, Reset

    async with FeedClient("ws://127.0.0.1:8000/v1/ws", token=TOKEN) as client:
        [stored] = await client.publish("booking:f4d1c8e5", {"verb": "comment.add", "object": "f4d1c8e5", "text": "Hi"})
        await client.patch("booking:f4d1c8e5", stored["id"], set={"text": "Hello"})
        await client.delete("booking:f4d1c8e5", stored["id"])

        async with await client.subscribe("booking:f4d1c8e5") as sub:
            history = await client.history("booking:f4d1c8e5")      # read history once the cursor is known
            async for item in sub:
                if isinstance(item, Reset):                          # events were lost: reload
                    history = await client.history(item.feed)
                else:
                    print(item.event, item.seq, item.activity)

What it does for you:

- **One connection, kept open.** A background task connects, authenticates with the first message
  (``{"type": "auth", "token": …}``; or an ``X-API-Key`` header), and reconnects after any failure
  with exponential backoff and jitter. Close codes 4001 (unauthenticated / token expired) and 4003
  (forbidden) are final: pending calls and subscriptions raise ``Unauthorized``.
- **Subscriptions that resume.** Each ``Subscription`` keeps its cursor ``(epoch, seq)``; after a
  reconnect it re-subscribes with ``since`` and the server replays what was missed. Events come in
  ``seq`` order, each at most once (a replayed event already yielded is dropped). If the server
  cannot replay (``recovered: false``) or sends ``reset``, the iterator yields a ``Reset`` marker:
  reload history, then keep iterating. Nothing is silently skipped.
- **Update, patch, delete** (``update``, ``patch``, ``delete``): acknowledged like ``publish`` but
  not retried (a stale retry could undo a newer change; use ``version`` for conditional writes).
- **Publish with acks and retries.** ``publish`` waits for the ``ack`` (per ``ref``, with a
  timeout). If the connection drops or the ack does not come, it retries on the next connection.
  To make the retry safe it first gives each activity a client ``id`` (a ULID of its ``time``)
  unless it already has an ``id`` or a ``foreign_id`` + ``time`` pair: a repeated write then
  overwrites the same activity (``version`` 2, an ``updated`` event) instead of adding a second
  one. Pass ``idempotent=False`` to keep activities untouched (then only writes that were never
  sent are retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

__all__ = [
    "ConnectionLost",
    "Cursor",
    "Event",
    "FeedClient",
    "FeedError",
    "Reset",
    "Subscription",
    "Unauthorized",
    "new_ulid",
]

log = logging.getLogger("feedclient")

#: Close codes after which reconnecting cannot help.
TERMINAL_CLOSE_CODES = {4001: "unauthenticated or token expired", 4003: "forbidden"}


# ---------------------------------------------------------------------------------------------
# What a subscription yields


@dataclass(frozen=True)
class Event:
    """One change of a feed: ``event`` is ``created``, ``updated`` or ``deleted``."""

    feed: str
    seq: int
    event: str
    activity: dict[str, Any]


@dataclass(frozen=True)
class Reset:
    """Changes were lost (``reason``: ``reset`` or ``not-recovered``): reload the feed's history.

    ``seq`` is the feed's change number the server continues from (None if it did not say). Events
    yielded after this marker are newer than the reset.
    """

    feed: str
    epoch: str
    seq: int | None
    reason: str


@dataclass
class Cursor:
    """A resume position: the last change seen. ``seq`` is None when unknown (after a reset)."""

    epoch: str | None = None
    seq: int | None = None


# ---------------------------------------------------------------------------------------------
# Errors


class FeedError(Exception):
    """An ``error`` reply (``code``, ``detail``), a timeout or a lost connection."""

    def __init__(self, code: str, detail: str, frame: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.frame = dict(frame) if frame else None


class ConnectionLost(FeedError):
    """The connection closed before the reply came (``sent`` says whether the message went out)."""

    def __init__(self, detail: str, *, sent: bool) -> None:
        super().__init__("disconnected", detail)
        self.sent = sent


class Unauthorized(FeedError):
    """The server refused the credentials (close 4001 / 4003, or HTTP 401/403 on the handshake)."""


# ---------------------------------------------------------------------------------------------
# Helpers

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_last_ulid = [0, 0]  # (ms, random part) of the last ULID made, for monotonic ids within a millisecond


def new_ulid(when: datetime | None = None) -> str:
    """A ULID (26 chars): 48 bits of milliseconds since the epoch, then 80 random bits.

    Ids made in the same millisecond increase (the random part of the previous one, plus one), so
    a batch keeps its order when sorted by id.
    """
    ms = int((when.timestamp() if when else time.time()) * 1000)
    last_ms, last_random = _last_ulid
    random_part = last_random + 1 if ms == last_ms and last_random < 2**80 - 1 else secrets.randbits(79)
    _last_ulid[:] = [ms, random_part]
    value = (ms << 80) | random_part
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def with_client_id(activity: Mapping[str, Any]) -> dict[str, Any]:
    """``activity`` with an ``id`` of our own, unless it already identifies itself."""
    out = dict(activity)
    if "id" not in out and not ("foreign_id" in out and "time" in out):
        out["id"] = new_ulid(_parse_time(out.get("time")))
    return out


def backoff_delays(min_delay: float, max_delay: float) -> Iterator[float]:
    """Exponential delays with "equal jitter": each is half fixed, half random."""
    for attempt in itertools.count():
        base = min(max_delay, min_delay * 2**attempt)
        yield base / 2 + random.random() * base / 2


# ---------------------------------------------------------------------------------------------
# Subscription

_CLOSED = object()


class Subscription:
    """The events of one feed, as an async iterator (``async for item in sub``).

    Yields ``Event`` and ``Reset`` objects. Ends when ``close()`` is called or the client closes;
    raises ``Unauthorized`` if the server refuses the credentials for good.
    """

    def __init__(self, client: FeedClient, feed: str, since: Cursor | None) -> None:
        self.client = client
        self.feed = feed
        #: The resume position (advanced as events are *received*, before they are yielded).
        self.cursor = Cursor(since.epoch, since.seq) if since else Cursor()
        self.active = True
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._first: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._attempts = 0
        self._catch_up: int | None = None
        self._ever_subscribed = False

    # -- the iterator ------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event | Reset:
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # stay closed for later calls
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)
            raise item
        return item  # type: ignore[no-any-return]

    async def get(self, timeout: float | None = None) -> Event | Reset:
        """The next item, waiting at most ``timeout`` seconds (``TimeoutError``)."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def close(self) -> None:
        """Unsubscribe; iteration ends once the queued items are consumed."""
        if self.active:
            self.active = False
            await self.client._drop(self)
        self._queue.put_nowait(_CLOSED)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- called by the client's reader, in frame order ------------------------------------------

    def _message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe", "feed": self.feed}
        if self.cursor.epoch and self.cursor.seq is not None:
            message["since"] = {"epoch": self.cursor.epoch, "seq": self.cursor.seq}
        return message

    def _on_subscribed(self, reply: dict[str, Any], resumed: bool, attempt: int) -> None:
        if attempt != self._attempts:
            return  # a newer subscribe is in flight
        first = not self._ever_subscribed
        self._ever_subscribed = True
        if resumed and reply.get("recovered"):
            self._catch_up = reply["seq"]  # the replay follows; adopt reply.seq at the barrier
        else:
            self.cursor = Cursor(reply["epoch"], reply["seq"])
            self._catch_up = None
            if resumed or not first:
                self._queue.put_nowait(Reset(self.feed, reply["epoch"], reply["seq"], "not-recovered"))
        if not self._first.done():
            self._first.set_result(reply)

    def _on_barrier(self, attempt: int) -> None:
        """The ``pong`` after ``subscribe``: every replayed event has been received."""
        if attempt == self._attempts and self._catch_up is not None:
            self.cursor.seq = max(self.cursor.seq or 0, self._catch_up)
            self._catch_up = None

    def _on_activity(self, frame: dict[str, Any]) -> None:
        seq = frame["seq"]
        if self.cursor.seq is not None and seq <= self.cursor.seq:
            return  # already yielded (replay overlap)
        self.cursor.seq = seq
        self._queue.put_nowait(Event(self.feed, seq, frame.get("event", "created"), frame.get("activity") or {}))

    def _on_reset(self, frame: dict[str, Any]) -> None:
        # Live events go on after the (epoch, seq) the reset names (older servers name no seq:
        # then accept whatever comes next).
        seq = frame.get("seq")
        self.cursor = Cursor(frame.get("epoch"), seq if isinstance(seq, int) else None)
        self._catch_up = None
        self._queue.put_nowait(Reset(self.feed, frame.get("epoch") or "", self.cursor.seq, "reset"))

    def _fail(self, exc: BaseException) -> None:
        if not self._first.done():
            self._first.set_exception(exc)
            self._first.exception()  # mark retrieved: subscribe() may have stopped waiting
        self._queue.put_nowait(exc)


# ---------------------------------------------------------------------------------------------
# The client


@dataclass
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    on_reply: Callable[[dict[str, Any]], None] | None = None
    sent: bool = False


class FeedClient:
    """A connection to one feed server, shared by any number of subscriptions and publishers.

    :param url: the WebSocket URL, e.g. ``ws://127.0.0.1:8000/v1/ws``
    :param token: a JWT (sent as the first message); omit for anonymous access to public feeds
    :param api_key: an API key (sent as the ``X-API-Key`` header on the handshake)
    :param ack_timeout: seconds to wait for a reply
    :param connect_timeout: seconds for one connection attempt (handshake + auth)
    :param min_delay, max_delay: the reconnect backoff range, seconds
    :param ping_interval: seconds between protocol pings (None disables); a peer that does not
        answer within ``ping_interval`` is considered gone and the client reconnects
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        ack_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        min_delay: float = 0.2,
        max_delay: float = 10.0,
        ping_interval: float | None = 20.0,
        max_size: int = 2**20,
    ) -> None:
        self.url = url
        self.token = token
        self.api_key = api_key
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.ping_interval = ping_interval
        self.max_size = max_size
        #: The authenticated identity (``sub`` from ``welcome``), None when anonymous.
        self.sub: str | None = None
        #: Called with every frame that is not a reply or a subscription event (e.g. count pushes).
        self.on_frame: Callable[[dict[str, Any]], None] | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()
        self._pending: dict[str, _Pending] = {}
        self._refs = itertools.count(1)
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._fatal: FeedError | None = None
        #: Connections opened so far (1 after the first connect; +1 per reconnect).
        self.connections = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> FeedClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while a connection is open and authenticated."""
        return self._ready.is_set()

    async def connect(self, timeout: float | None = None) -> None:
        """Start the connection task and wait until connected (``timeout`` defaults to ``connect_timeout``)."""
        if self._runner is None:
            self._closing = False
            self._runner = asyncio.create_task(self._run(), name=f"feedclient {self.url}")
        await self.wait_connected(timeout if timeout is not None else self.connect_timeout)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait for an open, authenticated connection; raises ``TimeoutError`` or ``Unauthorized``."""
        async with asyncio.timeout(timeout):
            while not self._ready.is_set():
                if self._fatal:
                    raise self._fatal
                if self._runner is None or self._runner.done():
                    raise FeedError("closed", "the client is closed")
                waiter = asyncio.ensure_future(self._ready.wait())
                try:
                    await asyncio.wait([waiter, self._runner], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
        if self._fatal:
            raise self._fatal

    async def close(self) -> None:
        """Close the connection for good; subscriptions end, pending calls raise ``FeedError``."""
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(BaseException):
                await self._runner
            self._runner = None
        self._fail_pending(FeedError("closed", "the client was closed"), everything=True)
        for sub in list(self.subscriptions.values()):
            sub._queue.put_nowait(_CLOSED)
        self.subscriptions.clear()

    async def _run(self) -> None:
        delays = backoff_delays(self.min_delay, self.max_delay)
        while not self._closing:
            try:
                ws = await self._open()
            except Unauthorized as exc:
                self._give_up(exc)
                return
            except (OSError, TimeoutError, WebSocketException, FeedError) as exc:
                delay = next(delays)
                log.info("connect to %s failed (%s); retrying in %.1f s", self.url, exc, delay)
                await asyncio.sleep(delay)
                continue
            delays = backoff_delays(self.min_delay, self.max_delay)
            code: int | None = None
            reason = ""
            try:
                self._ws = ws
                self.connections += 1
                self._ready.set()
                for sub in list(self.subscriptions.values()):
                    await self._send_subscribe(sub)
                async for raw in ws:
                    self._dispatch(raw)
            except (ConnectionClosed, ConnectionLost):
                pass  # see the close code below
            finally:
                self._ready.clear()
                self._ws = None
                code, reason = ws.close_code, ws.close_reason or ""
                self._fail_pending(ConnectionLost(f"connection closed ({code} {reason})".strip(), sent=True))
            if code in TERMINAL_CLOSE_CODES:
                self._give_up(Unauthorized("unauthorized", reason or TERMINAL_CLOSE_CODES[code]))
                return
            if not self._closing:
                delay = next(delays)
                log.info("connection to %s lost (%s); reconnecting in %.1f s", self.url, code, delay)
                await asyncio.sleep(delay)

    async def _open(self) -> ClientConnection:
        """Connect and authenticate (first-message auth); the reader is not running yet."""
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self.connect_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_interval,
                max_size=self.max_size,
                close_timeout=2,
            )
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise Unauthorized("unauthorized", f"handshake refused with HTTP {exc.response.status_code}") from exc
            raise
        if not self.token:
            self.sub = None
            return ws
        try:
            await ws.send(json.dumps({"type": "auth", "token": self.token, "ref": "auth"}))
            async with asyncio.timeout(self.connect_timeout):
                reply = json.loads(await ws.recv())
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            if code in TERMINAL_CLOSE_CODES:
                raise Unauthorized("unauthorized", exc.rcvd.reason if exc.rcvd else "") from exc
            raise
        except BaseException:
            await ws.close()
            raise
        if reply.get("type") != "welcome":
            await ws.close()
            if reply.get("type") == "error" and reply.get("code") == "unauthorized":
                raise Unauthorized("unauthorized", reply.get("detail", ""), reply)
            raise FeedError(reply.get("code", "protocol"), f"expected welcome, got {reply}", reply)
        self.sub = reply.get("sub")
        return ws

    def _give_up(self, exc: FeedError) -> None:
        log.warning("giving up on %s: %s", self.url, exc)
        self._fatal = exc
        self._fail_pending(exc, everything=True)
        for sub in list(self.subscriptions.values()):
            sub._fail(exc)

    # -- frames ----------------------------------------------------------------------------------

    def _dispatch(self, raw: str | bytes) -> None:
        """Handle one frame. Runs in the reader, so replies and events keep their order."""
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("ignoring a frame that is not JSON")
            return
        kind = frame.get("type")
        sub = self.subscriptions.get(frame.get("feed", ""))
        if kind == "activity":
            if sub is not None:
                sub._on_activity(frame)
            return
        if kind == "reset":
            if sub is not None:
                sub._on_reset(frame)
            return
        ref = frame.get("ref")
        pending = self._pending.pop(ref, None) if isinstance(ref, str) else None
        if pending is None:
            if kind == "error":
                log.warning("server error: %s %s", frame.get("code"), frame.get("detail"))
            if self.on_frame is not None:
                self.on_frame(frame)
            return
        if kind == "error":
            if not pending.future.done():
                pending.future.set_exception(FeedError(frame.get("code", "error"), frame.get("detail", ""), frame))
            return
        if pending.on_reply is not None:
            pending.on_reply(frame)
        if not pending.future.done():
            pending.future.set_result(frame)

    def _fail_pending(self, exc: FeedError, *, everything: bool = False) -> None:
        for ref, pending in list(self._pending.items()):
            if pending.sent or everything:
                del self._pending[ref]
                if not pending.future.done():
                    pending.future.set_exception(exc)
                    pending.future.exception()  # nobody may be waiting (e.g. barrier pings)

    async def _send(self, message: dict[str, Any], on_reply: Callable[[dict[str, Any]], None] | None = None) -> Any:
        """Send ``message`` with a fresh ref on the current connection; returns the reply future."""
        ws = self._ws
        if ws is None or not self._ready.is_set():
            raise ConnectionLost("not connected", sent=False)
        ref = f"r{next(self._refs)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending = _Pending(future, on_reply)
        self._pending[ref] = pending  # before sending: the reply may be read before send() returns
        try:
            await ws.send(json.dumps({**message, "ref": ref}))
        except ConnectionClosed as exc:
            self._pending.pop(ref, None)
            raise ConnectionLost("connection closed while sending", sent=False) from exc
        pending.sent = True
        return future

    # -- requests --------------------------------------------------------------------------------

    async def request(self, message: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Send any protocol message and return the reply that echoes its ``ref``.

        Waits for a connection first. Raises ``FeedError`` on an ``error`` reply, ``ConnectionLost``
        when the connection drops first, ``TimeoutError`` after ``timeout`` (default ``ack_timeout``).
        """
        async with asyncio.timeout(timeout if timeout is not None else self.ack_timeout):
            await self.wait_connected()
            future = await self._send(message)
            return await future  # type: ignore[no-any-return]

    async def publish(
        self,
        feed: str,
        activity: Mapping[str, Any] | list[Mapping[str, Any]],
        *,
        retries: int = 5,
        timeout: float | None = None,
        idempotent: bool = True,
    ) -> list[dict[str, Any]]:
        """Write one activity (a mapping) or several (a list) and return the stored activities.

        Retries up to ``retries`` times when the connection is lost or the ack times out (and on
        ``unavailable`` errors), each attempt waiting ``timeout`` seconds. See the module docstring
        for how ``idempotent`` keeps a retried write from adding a duplicate.
        """
        items = [activity] if isinstance(activity, Mapping) else list(activity)
        if idempotent:
            items = [with_client_id(item) for item in items]
        message: dict[str, Any] = {"type": "publish", "feed": feed}
        if isinstance(activity, Mapping):
            message["activity"] = items[0]
        else:
            message["activities"] = items
        delays = backoff_delays(self.min_delay, self.max_delay)
        for attempt in itertools.count():
            try:
                reply = await self.request(message, timeout=timeout)
                return list(reply.get("activities", []))
            except Unauthorized:
                raise
            except (ConnectionLost, TimeoutError, FeedError) as exc:
                retriable = (
                    isinstance(exc, TimeoutError)
                    or (isinstance(exc, ConnectionLost) and (idempotent or not exc.sent))
                    or (isinstance(exc, FeedError) and exc.code == "unavailable")
                )
                if isinstance(exc, TimeoutError) and not idempotent:
                    retriable = False
                if not retriable or attempt >= retries or self._closing:
                    raise
                delay = next(delays)
                log.info("publish to %s failed (%s); retry %d in %.1f s", feed, exc, attempt + 1, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def update(
        self,
        feed: str,
        activity_id: str,
        activity: Mapping[str, Any],
        *,
        version: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Replace an activity (like ``PUT``); with ``version``, only if it is still that version."""
        message: dict[str, Any] = {"type": "update", "feed": feed, "id": activity_id, "activity": dict(activity)}
        if version is not None:
            message["version"] = version
        reply = await self.request(message, timeout=timeout)
        return dict(reply["activities"][0])

    async def patch(
        self,
        feed: str,
        activity_id: str,
        *,
        set: Mapping[str, Any] | None = None,  # noqa: A002 - the protocol's name
        unset: list[str] | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Change some fields (like ``PATCH``): ``set`` dotted paths to values, ``unset`` others."""
        message: dict[str, Any] = {"type": "patch", "feed": feed, "id": activity_id}
        if set:
            message["set"] = dict(set)
        if unset:
            message["unset"] = list(unset)
        if version is not None:
            message["version"] = version
        reply = await self.request(message, timeout=timeout)
        return dict(reply["activities"][0])

    async def delete(
        self, feed: str, activity_id: str | None = None, *, foreign_id: str | None = None, timeout: float | None = None
    ) -> int:
        """Delete one activity by id, or every activity with ``foreign_id``; returns how many went."""
        if (activity_id is None) == (foreign_id is None):
            raise ValueError("give exactly one of activity_id or foreign_id")
        message: dict[str, Any] = {"type": "delete", "feed": feed}
        if activity_id is not None:
            message["id"] = activity_id
        else:
            message["foreign_id"] = foreign_id
        reply = await self.request(message, timeout=timeout)
        return int(reply.get("removed", 0))

    async def subscribe(
        self, feed: str, *, since: Cursor | Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> Subscription:
        """Subscribe to ``feed`` and return once the server confirmed (``sub.cursor`` is then set).

        ``since`` (a ``Cursor`` or ``{"epoch", "seq"}``) resumes from a position saved earlier.
        Raises ``FeedError`` if the server refuses (e.g. ``forbidden``).
        """
        if isinstance(since, Mapping):
            since = Cursor(since.get("epoch"), since.get("seq"))
        old = self.subscriptions.get(feed)
        if old is not None:
            await old.close()
        sub = Subscription(self, feed, since)
        # Registered subscriptions are (re)sent by the runner whenever a connection opens; if one
        # is open now, the runner has already done so and this one is sent here.
        self.subscriptions[feed] = sub
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.ack_timeout):
                if self.connected:
                    with contextlib.suppress(ConnectionLost):
                        await self._send_subscribe(sub)
                await asyncio.shield(sub._first)
                return sub
        except BaseException:
            if self.subscriptions.get(feed) is sub:
                del self.subscriptions[feed]
            sub.active = False
            raise

    async def _send_subscribe(self, sub: Subscription) -> None:
        """Send ``subscribe`` (with the cursor) then a ``ping`` whose ``pong`` marks the replay's end."""
        if not sub.active or self.subscriptions.get(sub.feed) is not sub:
            return
        message = sub._message()
        resumed = "since" in message
        sub._attempts += 1
        attempt = sub._attempts
        future = await self._send(message, lambda reply: sub._on_subscribed(reply, resumed, attempt))
        future.add_done_callback(lambda f: self._subscribe_done(sub, f))
        barrier = await self._send({"type": "ping"}, lambda _: sub._on_barrier(attempt))
        barrier.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _subscribe_done(self, sub: Subscription, future: asyncio.Future[dict[str, Any]]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None or isinstance(exc, ConnectionLost):
            return  # resubscribed on the next connection
        # The server refused the subscription (forbidden, invalid feed name…): final.
        if self.subscriptions.get(sub.feed) is sub:
            del self.subscriptions[sub.feed]
        sub.active = False
        sub._fail(exc)

    async def _drop(self, sub: Subscription) -> None:
        if self.subscriptions.get(sub.feed) is not sub:
            return
        del self.subscriptions[sub.feed]
        if self.connected:
            with contextlib.suppress(FeedError, TimeoutError):
                await self.request({"type": "unsubscribe", "feed": sub.feed}, timeout=2)

    # -- HTTP ------------------------------------------------------------------------------------

    @property
    def http_base(self) -> str:
        """The server's HTTP base URL, derived from the WebSocket URL."""
        parts = urllib.parse.urlsplit(self.url)
        scheme = "https" if parts.scheme == "wss" else "http"
        return f"{scheme}://{parts.netloc}"

    async def history(self, feed: str, *, limit: int = 25, **params: Any) -> dict[str, Any]:
        """One page of ``GET /v1/feeds/{feed}/activities`` (newest first): ``{"results", "next"}``.

        Extra keyword arguments are query parameters (``id_lt``, ``verb``, ``actor``…).
        """
        query = urllib.parse.urlencode({"limit": limit, **params})
        path = f"/v1/feeds/{urllib.parse.quote(feed, safe=':@._-')}/activities?{query}"
        page: dict[str, Any] = await self.get_json(path)
        return page

    async def get_json(self, path: str) -> Any:
        """GET ``path`` (or a full URL) with this client's credentials; raises ``FeedError`` on 4xx/5xx."""
        url = path if path.startswith("http") else self.http_base + path
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.api_key:
            headers["X-API-Key"] = self.api_key

        def fetch() -> Any:
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.ack_timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                try:
                    problem = json.loads(exc.read() or b"{}")
                except ValueError:
                    problem = {}
                raise FeedError(f"http_{exc.code}", problem.get("detail") or exc.reason, problem) from None

        return await asyncio.to_thread(fetch)
