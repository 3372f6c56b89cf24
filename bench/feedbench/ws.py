"""A minimal, fast WebSocket client built directly on ``asyncio.Protocol``.

Why not the ``websockets`` client: at 10,000 connections and 100k+ messages/s its per-connection
tasks, queues and per-frame objects make the *load generator* the bottleneck. This client does only
what a benchmark needs:

- the HTTP/1.1 upgrade handshake written by hand (RFC 6455 §4.1), checking ``Sec-WebSocket-Accept``;
- parsing of the (unmasked) server frames, including fragmentation and control frames;
- masked client frames (RFC 6455 §5.3: a fresh random 4-byte key per frame);
- ping → pong and close handshake.

Each connection hands complete messages to ``on_message(conn, payload_bytes)``. During set-up the
default handler queues messages so that ``await conn.recv()`` can be used; during a measurement the
load generator swaps in a tight callback that only looks for the benchmark timestamp.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import struct
from collections import deque
from collections.abc import Callable

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_pack_h = struct.Struct("!H").pack
_pack_q = struct.Struct("!Q").pack
_unpack_h = struct.Struct("!H").unpack_from
_unpack_q = struct.Struct("!Q").unpack_from
_getrandbits = random.getrandbits


class HandshakeError(Exception):
    """The server did not answer the upgrade with a valid ``101 Switching Protocols``."""


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``key`` (RFC 6455 §5.3).

    Done as one big-integer XOR, which is far faster in CPython than a byte loop.
    """
    n = len(payload)
    if n == 0:
        return payload
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """Build one final, masked client frame."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + _pack_h(n)
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + _pack_q(n)
    key = _getrandbits(32).to_bytes(4, "little")
    return header + key + mask_payload(payload, key)


def _default_on_message(conn: WSConnection, payload: bytes) -> None:
    conn.inbox.append(payload)
    waiter = conn._waiter
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class WSConnection(asyncio.Protocol):
    """One client WebSocket connection.

    Use :func:`connect` to create one. Attributes that callers use:

    ``on_message``  -- callable ``(conn, payload: bytes)``, called for each complete data message.
    ``close_code``  -- the close code the server sent (``None`` while open; 1006 if the TCP
                       connection dropped without a close frame).
    ``tag``         -- free slot for the load generator (e.g. the subscriber index).
    """

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self._request = self._build_request(host, port, path, headers or {})
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.close_code: int | None = None
        self.on_message: Callable[[WSConnection, bytes], None] = _default_on_message
        self.inbox: deque[bytes] = deque()
        self.tag: object = None
        self._buf = b""
        self._frag: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # -- handshake ---------------------------------------------------------------------------------

    def _build_request(self, host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
        self._key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(self._request)

    def _finish_handshake(self) -> None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > 65536:
                self._fail_handshake("response headers too large")
            return
        head, self._buf = self._buf[:end], self._buf[end + 4 :]
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"101":
            self._fail_handshake(f"upgrade refused: {lines[0].decode(errors='replace')}")
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest())
        if headers.get(b"sec-websocket-accept") != expected:
            self._fail_handshake("bad Sec-WebSocket-Accept")
            return
        self.open = True
        if not self.handshake.done():
            self.handshake.set_result(None)
        if self._buf:
            self._parse_frames()

    def _fail_handshake(self, why: str) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError(why))
        if self.transport is not None:
            self.transport.close()

    # -- receiving ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._buf:
            self._buf += data
        else:
            self._buf = data
        if self.open:
            self._parse_frames()
        else:
            self._finish_handshake()

    def _parse_frames(self) -> None:
        """Consume every complete frame in the buffer; keep a trailing partial frame."""
        buf = self._buf
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            hdr = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = _unpack_h(buf, pos + 2)[0]
                hdr = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = _unpack_q(buf, pos + 2)[0]
                hdr = 10
            if b1 & 0x80:  # servers must not mask; tolerate it anyway
                if end - pos < hdr + 4 + n:
                    break
                key = buf[pos + hdr : pos + hdr + 4]
                payload = mask_payload(buf[pos + hdr + 4 : pos + hdr + 4 + n], key)
                pos += hdr + 4 + n
            else:
                if end - pos < hdr + n:
                    break
                payload = buf[pos + hdr : pos + hdr + n]
                pos += hdr + n
            opcode = b0 & 0x0F
            if opcode == OP_TEXT or opcode == OP_BINARY:
                if b0 & 0x80:
                    self.on_message(self, payload)
                else:
                    self._frag = [payload]
            elif opcode == OP_CONT:
                self._frag.append(payload)
                if b0 & 0x80:
                    whole = b"".join(self._frag)
                    self._frag = []
                    self.on_message(self, whole)
            else:
                self._control(opcode, payload)
        self._buf = buf[pos:] if pos < end else b""

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.send(payload, OP_PONG)
        elif opcode == OP_CLOSE:
            code = _unpack_h(payload, 0)[0] if len(payload) >= 2 else 1005
            if self.close_code is None:
                self.close_code = code
                self.send(payload[:2], OP_CLOSE)  # echo the code, as RFC 6455 §5.5.1 asks
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.close_code is None:
            self.close_code = 1006
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError(f"connection lost during handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- sending -----------------------------------------------------------------------------------

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        """Queue one masked frame. Never blocks: the open-loop publisher depends on that."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(encode_frame(payload, opcode))

    def close(self, code: int = 1000) -> None:
        """Start a polite close; the TCP connection is dropped once the server echoes it."""
        if self.open and self.close_code is None:
            self.send(_pack_h(code), OP_CLOSE)
        elif self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- set-up helpers ----------------------------------------------------------------------------

    async def recv(self, timeout: float = 10.0) -> bytes:
        """Next queued message (only while ``on_message`` is the default queueing handler)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.inbox:
            if self.close_code is not None:
                raise ConnectionError(f"connection closed with code {self.close_code}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("no message from server")
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, remaining)
            except TimeoutError:
                pass
            finally:
                self._waiter = None
        return self.inbox.popleft()


async def connect(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> WSConnection:
    """Open a TCP connection and complete the WebSocket upgrade."""
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: WSConnection(host, port, path, headers), host, port), timeout
    )
    try:
        await asyncio.wait_for(asyncio.shield(conn.handshake), timeout)
    except BaseException:
        conn.abort()
        raise
    return conn
