"""Bayeux 1.0 (Faye) at ``/faye``: the realtime endpoint of the GetStream JS client (SPEC §11).

The JS client's ``feed.subscribe(cb)`` runs the ``faye`` client against ``fayeUrl``: a handshake
over HTTP long-polling, then ``/meta/connect`` over WebSocket (or long-polling: JSON POST,
cross-origin POST of ``message=<json>`` with a CORS preflight, or JSONP GET), and a
``/meta/subscribe`` to ``/site-<app_id>-feed-<slug><user_id>`` signed (``ext.api_key``,
``ext.signature``) with the feed's token or a user token.

Several server processes may serve one client (its ``/meta/connect`` may land anywhere), so the
client's state lives in Redis (``Keys.bayeux_client``): a meta hash, its subscribed channels and a
bounded queue of messages, all expiring when the client stays silent for ``bayeux_client_ttl``.
The process that accepted a ``/meta/subscribe`` holds the hub subscription (the same ``Hub`` and
audience rule as native WebSockets, per subscriber) and turns each change event into GetStream's
realtime payload in the client's queue; whichever process holds the client's ``/meta/connect``
hands the queue over (at once when it is the same process, else within ``_POLL`` seconds). A sweep
drops hub subscriptions whose client expired, disconnected or unsubscribed elsewhere.

Redis is reached through the shared command pipeline (``server.calls.Calls``, any topology): a
client's keys share the hash tag ``{bx:<clientId>}`` (one slot), so each step that touches several
of them is one Lua script over that slot; process heartbeats are single keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..calls import Calls, pairs, text
from ..errors import FeedError
from ..models import FEED_NAME
from .getstream.auth import GetStreamAuth
from .getstream.shapes import to_theirs

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..config import GetStreamSettings
    from ..keys import Keys
    from ..service import FeedService

log = logging.getLogger("feedserver.bayeux")

#: Seconds between queue checks of a held ``/meta/connect`` whose messages are queued by another process.
_POLL = 0.25
#: Most candidate feeds one channel may stand for (``usereric`` → ``u:sereric`` … ``userer:ic``).
_MAX_SPLITS = 32
_MAX_MESSAGES = 64
_MAX_BODY = 256 * 1024
CONNECTION_TYPES = ["long-polling", "cross-origin-long-polling", "callback-polling", "websocket"]


def _reply(message: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"channel": message.get("channel")}
    if "id" in message:
        out["id"] = message["id"]
    if isinstance(message.get("clientId"), str):
        out["clientId"] = message["clientId"]
    out.update(fields)
    return out


def feed_candidates(channel: str, app_id: str) -> list[str]:
    """The feeds ``/site-<app>-feed-<slug><user_id>`` may mean: GetStream joins slug and id without
    a separator, so every split with a valid slug (``\\w+``) and user id (``[\\w-]+``) is one."""
    head = f"/site-{app_id}-feed-"
    if not channel.startswith(head):
        return []
    name = channel[len(head) :]
    out = []
    for k in range(1, len(name)):
        slug, user_id = name[:k], name[k:]
        feed = f"{slug}:{user_id}"
        if "-" not in slug and FEED_NAME.fullmatch(feed):
            out.append(feed)
    return out[:_MAX_SPLITS]


def realtime_payload(feed: str, app_id: str, event: str, activity: Mapping[str, Any]) -> dict[str, Any]:
    """GetStream's realtime message for one change event of ``feed``."""
    new, deleted, deleted_fids = [], [], []
    if event == "deleted":
        deleted.append(activity.get("id"))
        if activity.get("foreign_id"):
            deleted_fids.append([activity["foreign_id"], to_theirs(activity)["time"]])
    else:  # created, or updated (GetStream sends the new version)
        new.append(to_theirs(activity))
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    return {
        "deleted": deleted,
        "deleted_foreign_ids": deleted_fids,
        "new": new,
        "feed": feed,
        "app_id": app_id,
        "published_at": stamp,
    }


class _Peer:
    """A hub peer standing for one Bayeux client's subscription to one channel (in this process)."""

    __slots__ = ("endpoint", "client_id", "channel")

    def __init__(self, endpoint: BayeuxEndpoint, client_id: str, channel: str) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.channel = channel

    def send(self, frame: bytes) -> None:
        """A hub frame: change events become realtime messages in the client's queue."""
        message = orjson.loads(frame)
        if message.get("type") != "activity":
            return  # subscribed / reset / counts: nothing a GetStream client knows
        payload = realtime_payload(message["feed"], self.endpoint.app_id, message["event"], message["activity"])
        self.endpoint.enqueue(self.client_id, self.channel, payload)


class BayeuxEndpoint:
    """The ``/faye`` endpoint: Bayeux messages in, replies and queued deliveries out."""

    def __init__(
        self,
        service: FeedService,
        auth: GetStreamAuth,
        calls: Calls,
        keys: Keys,
        settings: GetStreamSettings,
    ) -> None:
        self.service = service
        self.auth = auth
        self.calls = calls
        self.keys = keys
        self.app_id = settings.app_id
        self.hold = settings.bayeux_timeout
        # A held connect must not outlive its client: the TTL covers the hold and a reconnect.
        self.ttl_ms = int(max(settings.bayeux_client_ttl, settings.bayeux_timeout + 1) * 1000)
        self.max_queue = settings.bayeux_queue
        self._scripts = {name: calls.script(source) for name, source in _SCRIPTS.items()}
        # client id → channel → peers (one per candidate feed), for subscriptions held here
        self._local: dict[str, dict[str, list[_Peer]]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._pushes: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        # This process, as the holder of the subscriptions it accepted (see ``_holders_alive``).
        self.node = secrets.token_hex(8)
        self._node_key = keys.bayeux_node(self.node)
        self._interval = max(0.5, min(5.0, self.ttl_ms / 4000))
        self._node_ttl_ms = int(max(3 * self._interval, 3.0) * 1000)

    def routes(self) -> list[BaseRoute]:
        """``/faye`` and ``/faye/``: HTTP transports and the WebSocket."""
        methods = ["GET", "POST", "OPTIONS"]
        return [
            Route("/faye", self.http, methods=methods),
            Route("/faye/", self.http, methods=methods),
            WebSocketRoute("/faye", self.websocket),
            WebSocketRoute("/faye/", self.websocket),
        ]

    # -- transports --------------------------------------------------------------------------------

    async def http(self, request: Request) -> Response:
        """Long-polling (JSON POST), cross-origin long-polling (``message=``), JSONP (GET), preflight."""
        origin = request.headers.get("origin")
        cors = (
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get(
                    "access-control-request-headers", "Accept, Authorization, Content-Type, Pragma, X-Requested-With"
                ),
                "Access-Control-Max-Age": "86400",
                "Vary": "Origin",
            }
            if origin
            else {}
        )
        if request.method == "OPTIONS":
            return Response(status_code=200, headers=cors)
        jsonp = None
        try:
            if request.method == "GET":
                raw = request.query_params.get("message")
                jsonp = request.query_params.get("jsonp") or "jsonpcallback"
                if not jsonp.replace("_", "").replace(".", "").replace("$", "").isalnum():
                    return Response("bad jsonp callback", status_code=400, media_type="text/plain")
            else:
                body = await request.body()
                if len(body) > _MAX_BODY:
                    return Response("request too large", status_code=413, headers=cors, media_type="text/plain")
                kind = request.headers.get("content-type", "")
                if "application/json" in kind:
                    raw = body.decode()
                else:  # cross-origin long-polling: message=<urlencoded JSON>
                    found = parse_qs(body.decode()).get("message")
                    raw = found[0] if found else None
            messages = _messages(raw)
        except (ValueError, UnicodeDecodeError):
            return Response("malformed Bayeux message", status_code=400, headers=cors, media_type="text/plain")
        replies = await self.process(messages)
        data = orjson.dumps(replies)
        if jsonp is not None:
            return Response(
                b"/**/" + jsonp.encode() + b"(" + data + b");",
                media_type="text/javascript",
                headers={"Cache-Control": "no-cache, no-store", **cors},
            )
        return Response(data, media_type="application/json", headers={"Cache-Control": "no-cache, no-store", **cors})

    async def websocket(self, ws: WebSocket) -> None:
        """The WebSocket transport: each text frame a message array; held connects answer later."""
        await ws.accept()
        tasks: set[asyncio.Task[None]] = set()
        lock = asyncio.Lock()

        async def answer(messages: list[dict[str, Any]]) -> None:
            replies = await self.process(messages)
            if replies:
                async with lock:
                    with contextlib.suppress(Exception):  # the socket closed meanwhile
                        await ws.send_text(orjson.dumps(replies).decode())

        try:
            while True:
                text = await ws.receive_text()
                try:
                    messages = _messages(text)
                except ValueError:
                    await ws.close(1003)
                    return
                task = asyncio.create_task(answer(messages))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for task in tasks:
                task.cancel()

    # -- protocol ----------------------------------------------------------------------------------

    async def process(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Answer one batch; a ``/meta/connect`` alone is held until messages arrive or ``hold`` passes."""
        replies: list[dict[str, Any]] = []
        connect: dict[str, Any] | None = None
        for message in messages:
            channel = message.get("channel")
            try:
                if channel == "/meta/handshake":
                    replies.append(await self._handshake(message))
                elif channel == "/meta/connect":
                    connect = message
                elif channel == "/meta/subscribe":
                    replies.append(await self._subscribe(message))
                elif channel == "/meta/unsubscribe":
                    replies.append(await self._unsubscribe(message))
                elif channel == "/meta/disconnect":
                    replies.append(await self._disconnect(message))
                else:
                    replies.append(_reply(message, successful=False, error="403::Publishing is not allowed"))
            except FeedError as exc:
                log.warning("bayeux %s failed: %s", channel, exc.detail)
                replies.append(_reply(message, successful=False, error=f"{exc.status}::{exc.detail}"))
            except (RedisError, TimeoutError) as exc:
                log.warning("bayeux %s failed: Redis: %s", channel, exc)
                replies.append(_reply(message, successful=False, error="503::Redis is unavailable"))
        if connect is not None:
            try:
                replies += await self._connect(connect, wait=len(messages) == 1)
            except FeedError as exc:
                replies.append(_reply(connect, successful=False, error=f"{exc.status}::{exc.detail}"))
            except (RedisError, TimeoutError) as exc:
                log.warning("bayeux /meta/connect failed: Redis: %s", exc)
                replies.append(_reply(connect, successful=False, error="503::Redis is unavailable"))
        return replies

    def _advice(self) -> dict[str, Any]:
        return {"reconnect": "retry", "interval": 0, "timeout": int(self.hold * 1000)}

    async def _known(self, message: Mapping[str, Any], *, holders: bool = False) -> str | None:
        """The message's client id if that client exists (its TTL is refreshed). With ``holders``,
        also None when a process holding one of its subscriptions is gone (its state is dropped:
        the client handshakes and subscribes again, and a live process takes the subscriptions)."""
        client_id = message.get("clientId")
        if not isinstance(client_id, str) or not 0 < len(client_id) <= 64:
            return None
        keys = self.keys.bayeux_client(client_id)
        fields = await self.calls.eval(self._scripts["touch"], keys, [self.ttl_ms])
        if not fields:  # no meta hash: unknown or expired
            return None
        if holders:
            nodes = {text(v) for k, v in pairs(fields) if text(k).startswith("h:")} - {self.node}
            if nodes and not await self._holders_alive(nodes):
                await self._delete_client(client_id)
                self._drop(client_id)
                return None
        return client_id

    async def _delete_client(self, client_id: str) -> None:
        keys = self.keys.bayeux_client(client_id)
        await self.calls.cmd(keys[0], "DEL", *keys)  # one slot: a multi-key DEL is fine on a cluster

    async def _holders_alive(self, nodes: set[str]) -> bool:
        # Heartbeats live in different slots: one EXISTS each (pipelined per slot).
        keys = [self.keys.bayeux_node(node) for node in sorted(nodes)]
        return all(await self.calls.many([(key, "EXISTS", key) for key in keys]))

    async def _heartbeat(self) -> None:
        await self.calls.cmd(self._node_key, "SET", self._node_key, b"1", "PX", self._node_ttl_ms)

    def _unknown_client(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return _reply(
            message,
            successful=False,
            error="401:clientId:Unknown client",
            advice={"reconnect": "handshake", "interval": 0},
        )

    async def _handshake(self, message: Mapping[str, Any]) -> dict[str, Any]:
        client_id = secrets.token_hex(16)
        meta, _, _ = self.keys.bayeux_client(client_id)
        await self.calls.eval(self._scripts["handshake"], [meta], [str(time.time()), self.ttl_ms])
        return {
            **_reply(message),
            "clientId": client_id,
            "successful": True,
            "version": "1.0",
            "supportedConnectionTypes": CONNECTION_TYPES,
            "advice": self._advice(),
        }

    async def _subscribe(self, message: Mapping[str, Any]) -> dict[str, Any]:
        client_id = await self._known(message)
        if client_id is None:
            return self._unknown_client(message)
        wanted = message.get("subscription")
        channels = [wanted] if isinstance(wanted, str) else wanted
        if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
            return _reply(message, successful=False, error="405::Invalid subscription")
        ext: dict[str, Any] = message["ext"] if isinstance(message.get("ext"), dict) else {}
        try:
            caller = self.auth.caller(ext.get("api_key"), ext.get("signature"))
        except FeedError:
            return _reply(message, successful=False, subscription=wanted, error="403::Forbidden")
        plans: list[tuple[str, list[str]]] = []
        for channel in channels:
            feeds = [f for f in feed_candidates(channel, self.app_id) if caller.covers_feed(f)]
            if not feeds:
                return _reply(message, successful=False, subscription=wanted, error="403::Forbidden")
            plans.append((channel, feeds))
        await self._heartbeat()
        meta, _, subs = self.keys.bayeux_client(client_id)
        await self.calls.eval(self._scripts["subscribe"], [meta, subs], [self.ttl_ms, self.node, *channels])
        for channel, feeds in plans:
            if channel in self._local.get(client_id, {}):
                continue
            peers = self._local.setdefault(client_id, {}).setdefault(channel, [])
            for feed in feeds:
                peer = _Peer(self, client_id, channel)
                peers.append(peer)
                await self.service.subscribe(peer, caller.principal([feed]), feed, None, None)
        self._start_sweeper()
        return _reply(message, successful=True, subscription=wanted)

    async def _unsubscribe(self, message: Mapping[str, Any]) -> dict[str, Any]:
        client_id = await self._known(message)
        if client_id is None:
            return self._unknown_client(message)
        wanted = message.get("subscription")
        channels = [wanted] if isinstance(wanted, str) else wanted if isinstance(wanted, list) else []
        meta, _, subs = self.keys.bayeux_client(client_id)
        channels = [c for c in channels if isinstance(c, str)]
        if channels:
            await self.calls.eval(self._scripts["unsubscribe"], [meta, subs], channels)
        for channel in channels:
            self._drop(client_id, channel)
        return _reply(message, successful=True, subscription=wanted)

    async def _disconnect(self, message: Mapping[str, Any]) -> dict[str, Any]:
        client_id = message.get("clientId")
        if isinstance(client_id, str) and 0 < len(client_id) <= 64:
            await self._delete_client(client_id)
            self._drop(client_id)
        return _reply(message, successful=True)

    async def _connect(self, message: Mapping[str, Any], *, wait: bool) -> list[dict[str, Any]]:
        client_id = await self._known(message, holders=True)
        if client_id is None:
            return [self._unknown_client(message)]
        deadline = time.monotonic() + (self.hold if wait else 0)
        event = self._wakeups.setdefault(client_id, asyncio.Event())
        try:
            while True:
                event.clear()
                delivered = await self._take(client_id)
                left = deadline - time.monotonic()
                if delivered or left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(left, _POLL))
        finally:
            self._wakeups.pop(client_id, None)
        await self._known(message)  # the wait counts as activity
        return [_reply(message, successful=True, advice=self._advice()), *delivered]

    async def _take(self, client_id: str) -> list[dict[str, Any]]:
        """Every message queued for the client (removed), minus channels it no longer subscribes."""
        _, queue, subs = self.keys.bayeux_client(client_id)
        raw, channels = await self.calls.eval(self._scripts["take"], [queue, subs], [])
        current = {text(c) for c in channels}
        out = []
        for item in raw:
            message = orjson.loads(item)
            if message["channel"] in current:
                out.append(message)
        return out

    # -- deliveries --------------------------------------------------------------------------------

    def enqueue(self, client_id: str, channel: str, payload: dict[str, Any]) -> None:
        """Queue a delivery for the client (bounded: the oldest are dropped) and wake its connect."""
        item = orjson.dumps({"channel": channel, "data": payload, "id": secrets.token_hex(8)})
        task = asyncio.create_task(self._push(client_id, item))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    async def _push(self, client_id: str, item: bytes) -> None:
        _, queue, _ = self.keys.bayeux_client(client_id)
        try:
            await self.calls.eval(self._scripts["push"], [queue], [item, self.max_queue, self.ttl_ms])
        except Exception as exc:  # Redis trouble: the delivery is lost, as a dropped connection's would be
            log.warning("bayeux delivery to %s lost: %s", client_id, exc)
            return
        event = self._wakeups.get(client_id)
        if event is not None:
            event.set()

    def _drop(self, client_id: str, channel: str | None = None) -> None:
        """Forget this process's hub subscriptions of a client (one channel, or all)."""
        channels = self._local.get(client_id, {})
        for name in [channel] if channel is not None else list(channels):
            for peer in channels.pop(name, []) if name is not None else []:
                self.service.hub.drop_peer(peer)
        if not channels:
            self._local.pop(client_id, None)

    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="bayeux-sweep")

    async def close(self) -> None:
        """Shutdown: stop the sweep, drop this process's subscriptions and its heartbeat (so that
        its clients handshake again with a live process at their next connect)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sweeper
        for client_id in list(self._local):
            self._drop(client_id)
        with contextlib.suppress(Exception):
            await self.calls.cmd(self._node_key, "DEL", self._node_key)

    async def _sweep(self) -> None:
        """Keep this process's heartbeat while it holds subscriptions; drop local subscriptions
        whose client expired, disconnected or unsubscribed elsewhere."""
        while self._local:
            await asyncio.sleep(self._interval)
            try:
                await self._heartbeat()
            except Exception as exc:
                log.warning("bayeux heartbeat: %s", exc)
            for client_id, channels in list(self._local.items()):
                meta, _, subs = self.keys.bayeux_client(client_id)
                try:
                    alive, current = await self.calls.many([(meta, "EXISTS", meta), (subs, "SMEMBERS", subs)])
                except Exception as exc:
                    log.warning("bayeux sweep: %s", exc)
                    break
                if not alive:
                    self._drop(client_id)
                    continue
                names = {text(c) for c in current}
                for channel in [c for c in channels if c not in names]:
                    self._drop(client_id, channel)


#: Each step over several keys of one client is one script (the keys share the client's slot).
_SCRIPTS = {
    # KEYS meta, queue, subs; ARGV ttl_ms → the meta hash's fields (flat; empty: no such client).
    "touch": """
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return redis.call('HGETALL', KEYS[1])
""",
    # KEYS meta; ARGV created, ttl_ms.
    "handshake": """
redis.call('HSET', KEYS[1], 'created', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
""",
    # KEYS meta, subs; ARGV ttl_ms, node, channel… → subscribe, held by node.
    "subscribe": """
for i = 3, #ARGV do
  redis.call('SADD', KEYS[2], ARGV[i])
  redis.call('HSET', KEYS[1], 'h:' .. ARGV[i], ARGV[2])
end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
""",
    # KEYS meta, subs; ARGV channel…
    "unsubscribe": """
for i = 1, #ARGV do
  redis.call('SREM', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[1], 'h:' .. ARGV[i])
end
return 1
""",
    # KEYS queue, subs → {queued messages (removed), subscribed channels}.
    "take": """
local raw = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return {raw, redis.call('SMEMBERS', KEYS[2])}
""",
    # KEYS queue; ARGV item, max, ttl_ms: append, keep the newest max.
    "push": """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
""",
}


def _messages(raw: str | None) -> list[dict[str, Any]]:
    """A Bayeux request: one message object or an array of them."""
    if raw is None:
        raise ValueError("no message")
    value = orjson.loads(raw)
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > _MAX_MESSAGES or not all(isinstance(m, dict) for m in items):
        raise ValueError("expected message objects")
    return items


__all__ = ["BayeuxEndpoint", "CONNECTION_TYPES", "feed_candidates", "realtime_payload"]
