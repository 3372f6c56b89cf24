"""Redis Sentinel: the master is discovered through the Sentinels, on every connect.

Both the store's lanes (``pipeline.Batcher``) and the single-node broker (``server.broker.Broker``)
take their connections from one pool (``sentinel_pool``) whose connections ask the Sentinels for
the current master each time they connect. After a failover the old connections fail (Sentinel
kills the clients of a reconfigured node; a killed master refuses) or answer READONLY (a demoted
master: the lanes drop such a connection), so the next connect lands on the new master.

Discovery opens a short-lived connection per question and always closes it: redis-py's pooled
``Sentinel`` clients can leave connections behind when a caller's timeout cancels a discovery
mid-handshake, and here every connect runs under the store's ``command_timeout``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection, parse_url

__all__ = ["SentinelResolver", "sentinel_pool"]

#: Sentinel flags that mean "do not send writes there".
_DOWN_FLAGS = {"s_down", "o_down", "disconnected"}


class SentinelResolver:
    """Asks Sentinels (``host:port`` each, in turn) where the master called ``name`` is."""

    def __init__(self, sentinels: Sequence[str], name: str, *, timeout: float) -> None:
        self.sentinels = [(host, int(port)) for host, _, port in (s.rpartition(":") for s in sentinels)]
        self.name = name
        self.timeout = timeout

    async def master(self) -> tuple[str, int]:
        """The current master's (host, port); ``ConnectionError`` if no Sentinel names a healthy one."""
        errors: list[str] = []
        for i, (host, port) in enumerate(self.sentinels):
            conn = Connection(
                host=host, port=port, socket_timeout=self.timeout, socket_connect_timeout=self.timeout, protocol=2
            )
            try:
                await conn.connect()
                await conn.send_command("SENTINEL", "MASTER", self.name)
                reply = await conn.read_response()
            except (redis_errors.RedisError, OSError) as exc:
                errors.append(f"{host}:{port}: {exc!r}")
                continue
            finally:
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            state = _pairs(reply)
            flags = set(state.get("flags", "").split(","))
            if state.get("ip") and not flags & _DOWN_FLAGS:
                if i:  # ask the one that knew first next time
                    self.sentinels.insert(0, self.sentinels.pop(i))
                return state["ip"], int(state["port"])
            errors.append(f"{host}:{port}: master {self.name!r} is {state.get('flags') or 'unknown'}")
        raise redis_errors.ConnectionError(f"no Sentinel names a healthy master {self.name!r}: {'; '.join(errors)}")


def _pairs(reply: Any) -> dict[str, str]:
    """A flat ``[field, value, …]`` reply (or a RESP3 map) as a dict of strings."""
    if isinstance(reply, dict):
        reply = [x for pair in reply.items() for x in pair]
    if not isinstance(reply, list):
        return {}
    text = [x.decode() if isinstance(x, bytes) else str(x) for x in reply]
    return dict(zip(text[::2], text[1::2], strict=False))


class _MasterConnection(Connection):
    """A connection that asks the Sentinels for the master's address before each connect."""

    def __init__(self, *, resolver: SentinelResolver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resolver = resolver

    async def connect(self) -> None:
        """Resolve the master, then connect to it."""
        if not self.is_connected:
            self.host, self.port = await self._resolver.master()
        await super().connect()


class _MasterSSLConnection(SSLConnection):
    """``_MasterConnection`` over TLS."""

    def __init__(self, *, resolver: SentinelResolver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resolver = resolver

    async def connect(self) -> None:
        """Resolve the master, then connect to it."""
        if not self.is_connected:
            self.host, self.port = await self._resolver.master()
        await super().connect()


def sentinel_pool(sentinels: Sequence[str], master: str, url: str, *, timeout: float) -> ConnectionPool:
    """A pool whose connections go to the master named ``master`` by ``sentinels`` (``host:port``).

    ``url`` (may be empty) gives the data nodes' credentials, TLS and database; its host is ignored.
    A Sentinel that does not answer within a third of ``timeout`` is skipped for the next one.
    """
    kwargs: dict[str, Any] = {}
    if url:
        kwargs = dict(parse_url(url))
        kwargs.pop("host", None)
        kwargs.pop("port", None)
    tls = kwargs.pop("connection_class", Connection) is SSLConnection
    return ConnectionPool(
        connection_class=_MasterSSLConnection if tls else _MasterConnection,
        resolver=SentinelResolver(sentinels, master, timeout=timeout / 3),
        socket_connect_timeout=timeout,
        socket_timeout=None,  # the lanes bound each pipeline themselves
        protocol=2,
        **kwargs,
    )
