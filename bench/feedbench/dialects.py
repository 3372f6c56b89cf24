"""Client-side "dialects": how each server under test is subscribed to and published to.

Every server in the benchmark (our server, the raw ``websockets`` baseline and the three peers)
implements the same tiny scenario -- *one room, N subscribers, a publisher whose messages are
fanned out* -- but each spells it differently on the wire. A dialect hides that difference so the
load generator (and therefore every measurement) is exactly the same code for all of them.

A dialect answers five questions:

- which path (and headers) a subscriber / the publisher opens;
- what a subscriber sends after the upgrade until it is subscribed (``setup_sub``);
- what the publisher sends after the upgrade until it may publish (``setup_pub``);
- how one published message is encoded (``publish_frame``) -- it always carries ``"bench_t":<ns>``,
  a ``time.monotonic_ns()`` stamp taken when the frame is written, so receivers compute latency;
- how to answer protocol keep-alives in the middle of a measurement (``keepalive``) and how to
  recognise the publisher's replies (``reply_kind``).

Dialects are looked up by name from a small JSON-able spec (``{"name": "ours", ...}``) because the
harness hands them to the load-generator process over a pipe.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .ws import WSConnection

_TYPE_RE = re.compile(rb'"type"\s*:\s*"([A-Za-z_]+)"')


def message_type(payload: bytes) -> str | None:
    """The ``"type"`` of a JSON message, without a full JSON parse (first occurrence wins)."""
    m = _TYPE_RE.search(payload, 0, 200)
    return m.group(1).decode() if m else None


def make_token(secret: str, sub: str, feeds: dict[str, list[str]], roles: list[str] | None = None) -> str:
    """An HS256 JWT in the shape our server expects (SPEC §3)."""
    import jwt  # PyJWT; imported lazily because only the "ours" dialect needs it

    claims: dict[str, Any] = {"sub": sub, "feeds": feeds, "exp": int(time.time()) + 4 * 3600}
    if roles:
        claims["roles"] = roles
    return jwt.encode(claims, secret, algorithm="HS256")


async def _expect(conn: WSConnection, wanted: str, timeout: float, what: str) -> bytes:
    """Read messages until one of type ``wanted`` arrives; an ``error`` message aborts."""
    while True:
        payload = await conn.recv(timeout)
        kind = message_type(payload)
        if kind == wanted:
            return payload
        if kind == "error":
            raise RuntimeError(f"{what}: server answered {payload[:300]!r}")


class Dialect:
    """Base class; see the module docstring for what each hook means."""

    name = "base"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def sub_path(self, feed: str) -> str:
        raise NotImplementedError

    def pub_path(self) -> str:
        raise NotImplementedError

    def sub_headers(self, index: int) -> dict[str, str]:
        return {}

    def pub_headers(self) -> dict[str, str]:
        return {}

    async def setup_sub(self, conn: WSConnection, feed: str, index: int, timeout: float) -> None:
        return None

    async def setup_pub(self, conn: WSConnection, timeout: float) -> None:
        return None

    def publish_frame(self, feed: str, ref: int, bench_t: int, audience: str) -> bytes:
        raise NotImplementedError

    def keepalive(self, conn: WSConnection, payload: bytes) -> None:
        """Called for non-benchmark messages during a measurement."""
        return None

    def reply_kind(self, payload: bytes) -> str | None:
        """Classify a message the *publisher* received: ``"ack"``, ``"error"`` or other."""
        return message_type(payload)


class RawDialect(Dialect):
    """The baseline: ``peers/raw_websockets/server.py``.

    Subscribers open ``/sub?feed=F`` and get ``{"type":"subscribed"}``. The publisher opens ``/pub``
    and sends ``<feed>\\n<json>``; the server broadcasts ``<json>`` verbatim to that feed's
    subscribers (``websockets.broadcast``). With ``/pub?ack=1`` it also answers each message with
    ``{"type":"ack","ref":…}`` -- the request/response "hello" used as the WS-ingest baseline.
    """

    name = "raw"

    def sub_path(self, feed: str) -> str:
        return f"/sub?feed={feed}"

    def pub_path(self) -> str:
        return "/pub?ack=1" if self.spec.get("ack") else "/pub"

    async def setup_sub(self, conn: WSConnection, feed: str, index: int, timeout: float) -> None:
        await _expect(conn, "subscribed", timeout, "subscribe")

    def publish_frame(self, feed: str, ref: int, bench_t: int, audience: str) -> bytes:
        return (
            f'{feed}\n{{"type":"activity","feed":"{feed}","seq":{ref},"ref":"{ref}","event":"created",'
            f'"activity":{{"verb":"post","object":"o:1","bench_t":{bench_t}}}}}'
        ).encode()


class OursDialect(Dialect):
    """Our server, SPEC §5: ``/v1/ws``, ``auth`` → ``welcome``, ``subscribe`` → ``subscribed``.

    Spec keys: ``secret`` (HS256), ``rights`` (the ``feeds`` claim of subscribers),
    ``role_every``/``role`` (give every k-th subscriber that role, for the audience scenario),
    ``header_auth`` (authenticate with ``Authorization: Bearer`` on the upgrade instead of a
    first message).
    """

    name = "ours"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.secret: str = spec["secret"]
        self.rights: dict[str, list[str]] = spec.get("rights") or {"bench:*": ["read", "write", "member"]}
        self.header_auth = bool(spec.get("header_auth"))

    def token_for(self, index: int) -> str:
        roles = None
        every = self.spec.get("role_every")
        if every and index % int(every) == 0:
            roles = [self.spec.get("role", "bench-vip")]
        return make_token(self.secret, f"u{index}", self.rights, roles)

    def pub_token(self) -> str:
        return make_token(self.secret, "bench-publisher", {"bench:*": ["read", "write", "member"]})

    def sub_path(self, feed: str) -> str:
        return "/v1/ws"

    def pub_path(self) -> str:
        return "/v1/ws"

    def sub_headers(self, index: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_for(index)}"} if self.header_auth else {}

    def pub_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.pub_token()}"} if self.header_auth else {}

    async def _auth(self, conn: WSConnection, token: str, timeout: float) -> None:
        if not self.header_auth:
            conn.send(f'{{"type":"auth","token":"{token}"}}'.encode())
            await _expect(conn, "welcome", timeout, "auth")

    async def setup_sub(self, conn: WSConnection, feed: str, index: int, timeout: float) -> None:
        await self._auth(conn, self.token_for(index), timeout)
        conn.send(f'{{"type":"subscribe","feed":"{feed}","ref":"s{index}"}}'.encode())
        await _expect(conn, "subscribed", timeout, f"subscribe {feed}")

    async def setup_pub(self, conn: WSConnection, timeout: float) -> None:
        await self._auth(conn, self.pub_token(), timeout)

    def publish_frame(self, feed: str, ref: int, bench_t: int, audience: str) -> bytes:
        return (
            f'{{"type":"publish","feed":"{feed}","ref":"{ref}","activity":{{"verb":"post",'
            f'"object":"o:1","audience":{audience},"bench_t":{bench_t}}}}}'
        ).encode()


class ChannelsDialect(Dialect):
    """``peers/django_channels``: an ``AsyncWebsocketConsumer`` at ``/ws/`` with JSON messages
    ``subscribe`` → ``subscribed`` and ``publish`` (→ ``group_send`` through channels_redis)."""

    name = "channels"

    def sub_path(self, feed: str) -> str:
        return "/ws/"

    def pub_path(self) -> str:
        return "/ws/"

    async def setup_sub(self, conn: WSConnection, feed: str, index: int, timeout: float) -> None:
        conn.send(f'{{"type":"subscribe","feed":"{feed}"}}'.encode())
        await _expect(conn, "subscribed", timeout, "subscribe")

    def publish_frame(self, feed: str, ref: int, bench_t: int, audience: str) -> bytes:
        return (
            f'{{"type":"publish","feed":"{feed}","ref":"{ref}","activity":{{"verb":"post",'
            f'"object":"o:1","bench_t":{bench_t}}}}}'
        ).encode()


class SocketIODialect(Dialect):
    """Engine.IO v4 / Socket.IO v5 over a raw WebSocket (python-socketio and Node socket.io).

    ``/socket.io/?EIO=4&transport=websocket``: the server opens with ``0{…}``; we connect the
    default namespace with ``40`` and get ``40{…}``; we join the room with an acknowledged event
    ``420["subscribe","<feed>"]`` → ``430[…]``. Events are ``42["activity",{…}]``. The server pings
    with ``2``, which must be answered with ``3`` or it drops us after ``pingTimeout``.
    """

    name = "socketio"

    def sub_path(self, feed: str) -> str:
        return "/socket.io/?EIO=4&transport=websocket"

    def pub_path(self) -> str:
        return "/socket.io/?EIO=4&transport=websocket"

    async def _open(self, conn: WSConnection, timeout: float) -> None:
        while not (await conn.recv(timeout)).startswith(b"0"):
            pass
        conn.send(b"40")
        while True:
            pkt = await conn.recv(timeout)
            if pkt.startswith(b"40"):
                return
            if pkt.startswith(b"44"):
                raise RuntimeError(f"namespace connect refused: {pkt[:200]!r}")
            self.keepalive(conn, pkt)

    async def setup_sub(self, conn: WSConnection, feed: str, index: int, timeout: float) -> None:
        await self._open(conn, timeout)
        conn.send(f'420["subscribe","{feed}"]'.encode())
        while True:
            pkt = await conn.recv(timeout)
            if pkt.startswith(b"430"):
                return
            self.keepalive(conn, pkt)

    async def setup_pub(self, conn: WSConnection, timeout: float) -> None:
        await self._open(conn, timeout)

    def publish_frame(self, feed: str, ref: int, bench_t: int, audience: str) -> bytes:
        return (
            f'42["publish",{{"feed":"{feed}","ref":"{ref}","activity":{{"verb":"post",'
            f'"object":"o:1","bench_t":{bench_t}}}}}]'
        ).encode()

    def keepalive(self, conn: WSConnection, payload: bytes) -> None:
        if payload == b"2":
            conn.send(b"3")

    def reply_kind(self, payload: bytes) -> str | None:
        if payload == b"2":
            return "ping"
        return None


DIALECTS: dict[str, type[Dialect]] = {
    cls.name: cls for cls in (RawDialect, OursDialect, ChannelsDialect, SocketIODialect)
}


def make_dialect(spec: dict[str, Any]) -> Dialect:
    return DIALECTS[spec["name"]](spec)
