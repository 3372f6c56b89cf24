"""Plain commands and scripts over the store's command ``Pipeline`` (any topology), for the
follow, reaction and object stores: each call is routed by its key, bounded in time, and Redis
trouble becomes ``Unavailable`` (503), as in ``FeedStore``.

Replies are raw RESP2 values (bytes, ints, nested lists): no per-command response parsing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors

from .backends.base import Pipeline
from .errors import Unavailable
from .store import RETRY_AFTER

_TRANSIENT = frozenset(("BUSY", "OOM", "READONLY", "MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"))


class Calls:
    """``await calls.cmd(key, "HGET", key, field)``, ``await calls.many([...])``, scripts."""

    def __init__(self, pipeline: Pipeline, timeout: float) -> None:
        self.pipeline = pipeline
        self.timeout = timeout

    def script(self, source: str) -> str:
        """Register a script; its SHA1."""
        return self.pipeline.script(source)

    async def cmd(self, key: str, *args: Any) -> Any:
        """One command, routed by ``key``."""
        return (await self._wait([self.pipeline.command(key, *args)]))[0]

    async def many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Commands ``(key, *args)`` queued at once (pipelined per slot); their replies in order."""
        if not commands:
            return []
        return await self._wait([self.pipeline.command(c[0], *c[1:]) for c in commands])

    async def eval(self, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script call (every key in one slot)."""
        return (await self._wait([self.pipeline.evalsha(sha, keys, args)]))[0]

    async def _wait(self, futures: list[asyncio.Future[Any]]) -> list[Any]:
        try:
            async with asyncio.timeout(self.timeout):
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            raise Unavailable("Redis did not answer in time", retry_after=RETRY_AFTER) from None
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise Unavailable(f"Redis is unavailable: {type(exc).__name__}", retry_after=RETRY_AFTER) from None
        except redis_errors.ResponseError as exc:
            if str(exc).split(" ", 1)[0] in _TRANSIENT:  # the error code word (BUSY, not BUSYGROUP)
                raise Unavailable(f"Redis refused: {str(exc)[:80]}", retry_after=RETRY_AFTER) from None
            raise
        finally:
            for future in futures:  # a failed gather leaves the others' errors unretrieved
                if future.done() and not future.cancelled():
                    future.exception()


def text(value: Any) -> str:
    """A RESP bulk string as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs(flat: Sequence[Any]) -> list[tuple[Any, Any]]:
    """``[k1, v1, k2, v2]`` → ``[(k1, v1), (k2, v2)]``."""
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
