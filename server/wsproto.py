"""feedserver's uvicorn WebSocket protocol, and the synchronous frame writes ``ws.py`` fans out with.

ASGI only offers an awaitable ``send``; awaiting it once per subscriber would make fan-out pay a
task switch per frame, and ASGI cannot drop a peer whose socket never drains. So this subclass of
uvicorn's ``websockets-sansio`` protocol offers the app a ``FrameSink`` through the ASGI scope's
``extensions`` (the standard way for a server to offer extras), under ``DIRECT_SEND``:

- frames are built by the websockets Sans-I/O ``ServerProtocol`` of the connection, through its
  public ``send_text``/``data_to_send``. On a connection without extensions a server frame does
  not depend on the connection (no mask, no compression state), so the bytes one connection's
  protocol produced for a payload are written as they are to the others that send the same
  payload (fan-out: one frame built per event, not per subscriber);
- everything that touches uvicorn's side (its transport, ``writable`` flow-control event and
  ``close_sent``) is in this one class, against the uvicorn/websockets versions pinned in
  ``pyproject.toml``; ``tests/test_ws.py`` fails loudly if the sink is not offered.

Any other server simply offers no sink, and ``ws.py`` falls back to ASGI ``send``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol as _UvicornSansIOProtocol,
)
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

log = logging.getLogger("feedserver")

#: The ASGI scope extension under which the protocol offers its ``FrameSink``.
DIRECT_SEND = "feedserver.direct_send"


class FrameSink(Protocol):
    """Synchronous text-frame writes to one WebSocket, while its socket accepts data."""

    def send_texts(self, payloads: Sequence[bytes]) -> bool:
        """Write one text frame per payload now, in one socket write; False (nothing written) if
        the socket is backed up or the connection is closing — the caller queues them instead."""

    def abort_if_stuck(self) -> None:
        """Drop the connection if it is closing and its socket still holds unsent data."""


#: (payload, frame) of the last single frame a connection without extensions built.
_last_frame: tuple[bytes, bytes] = (b"", b"")


class WebSocketsSansIOProtocol(_UvicornSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, with three changes.

    - It offers the app a ``FrameSink`` (``DIRECT_SEND`` in the scope's extensions; see above).
    - A peer missing its pong is really dropped. On a keepalive timeout uvicorn queues a 1011 close
      frame and calls ``transport.close()``, which waits until the write buffer has drained. A
      frozen peer (SIGSTOP, a suspended laptop) whose TCP window is full never drains it: the
      connection would live on, subscribed, with no disconnect ever reaching the app. Here the
      transport is aborted when the close frame cannot be flushed at once.
    - permessage-deflate keeps less state per connection: zlib windows of 2^10 bytes and memLevel
      3 (uvicorn: 2^12 and 5) hold an idle connection's compressor and decompressor to ~16 KiB
      instead of ~40 KiB. Activity frames are small JSON texts; the larger windows gain little.
    """

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        if config.ws_per_message_deflate:
            self.conn = ServerProtocol(
                extensions=[
                    ServerPerMessageDeflateFactory(
                        server_max_window_bits=10, client_max_window_bits=10, compress_settings={"memLevel": 3}
                    )
                ],
                max_size=config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )

    async def run_asgi(self) -> None:
        """Offer the sink in the scope, then run the app as uvicorn does."""
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[DIRECT_SEND] = self
        await super().run_asgi()

    def keepalive_timeout(self) -> None:
        """uvicorn's handling, then abort if the close frame is stuck behind unread data."""
        super().keepalive_timeout()
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size():
            log.info(
                "WebSocket peer %s missed its pong with %d bytes unread; dropping it",
                self.client,
                transport.get_write_buffer_size(),
            )
            transport.abort()

    # -- FrameSink -------------------------------------------------------------------------------

    def send_texts(self, payloads: Sequence[bytes]) -> bool:
        """``FrameSink.send_texts``: frames from the Sans-I/O protocol, written without awaiting."""
        global _last_frame
        conn, transport = self.conn, self.transport
        if self.close_sent or not self.writable.is_set() or transport.is_closing() or conn.state is not OPEN:
            return False
        if len(payloads) == 1 and not conn.extensions:
            payload = payloads[0]
            cached = _last_frame
            if cached[0] is payload:  # the same event, fanned out: the frame another protocol built
                transport.write(cached[1])
                return True
            conn.send_text(payload)
            out = conn.data_to_send()
            if len(out) == 1:
                _last_frame = (payload, out[0])
            transport.write(b"".join(out))
            return True
        for payload in payloads:
            conn.send_text(payload)
        transport.write(b"".join(conn.data_to_send()))
        return True

    def abort_if_stuck(self) -> None:
        """``FrameSink.abort_if_stuck``."""
        transport = self.transport
        if not transport.is_closing() or transport.get_write_buffer_size():
            transport.abort()
