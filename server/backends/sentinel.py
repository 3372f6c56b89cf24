"""Redis Sentinel: the master is discovered through the Sentinels, on every connect.

Both the store's lanes (``pipeline.Batcher``) and the single-node broker (``server.broker.Broker``)
take their connections from one ``SentinelConnectionPool``: its ``make_connection()`` asks the
Sentinels for the current master each time a connection opens. After a failover the old
connections fail (Sentinel kills the clients of a reconfigured node; a killed master refuses) or
answer READONLY (a demoted master: redis-py's Sentinel connection turns that into a connection
error, and the lanes drop such a connection too), so the next connect lands on the new master.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

__all__ = ["close_sentinel_pool", "sentinel_pool"]


def sentinel_pool(sentinels: Sequence[str], master: str, url: str, *, timeout: float) -> SentinelConnectionPool:
    """A pool whose connections go to the master named ``master`` by ``sentinels`` (``host:port``).

    ``url`` (may be empty) gives the data nodes' credentials, TLS and database; its host is ignored.
    """
    kwargs: dict[str, Any] = {}
    if url:
        kwargs = dict(parse_url(url))
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        if kwargs.pop("connection_class", None) is not None and url.startswith("rediss://"):
            kwargs["ssl"] = True
    addresses = []
    for sentinel in sentinels:
        host, _, port = sentinel.rpartition(":")
        addresses.append((host, int(port)))
    manager = Sentinel(
        addresses,
        min_other_sentinels=0,
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout, "protocol": 2},
    )
    return SentinelConnectionPool(
        master,
        manager,
        socket_connect_timeout=timeout,
        socket_timeout=None,  # the lanes bound each pipeline themselves
        protocol=2,
        **kwargs,
    )


async def close_sentinel_pool(pool: SentinelConnectionPool) -> None:
    """Close the pool's connections and its clients of the Sentinels."""
    await pool.disconnect()
    for client in pool.sentinel_manager.sentinels:
        await client.aclose()
