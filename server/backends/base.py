"""The contracts the service and the hub depend on: a ``Store`` and a ``Broker``.

These are ``typing.Protocol``s, satisfied structurally (centrifuge's ``Broker``, broadcaster's
backends). One store class (``server.store.FeedStore``) runs on every topology through a command
pipeline (``Pipeline``: single node, Sentinel-discovered master, or slot-routed cluster lanes);
brokers differ per topology (``server.broker.Broker`` for one node or Sentinel, and
``server.backends.cluster_broker.ClusterBroker`` on a cluster). ``app.py`` picks them.

The result dataclasses live in ``server.store`` and are re-exported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from ..store import CursorResult, ItemResult, PageResult, ReplaceItem, WriteItem

__all__ = [
    "Broker",
    "CursorResult",
    "EventCallback",
    "ItemResult",
    "PageResult",
    "Pipeline",
    "ReplaceItem",
    "ResyncCallback",
    "Store",
    "WriteItem",
]

#: ``on_event(feed, data)``: one change event (or counts message) published on ``feed``'s channel.
EventCallback = Callable[[str, bytes], None]
#: ``on_resync(feeds)``: these feeds (None: every feed) may have missed events; read their change logs.
ResyncCallback = Callable[[Collection[str] | None], None]


class Store(Protocol):
    """Feeds in Redis: atomic writes (one script each), reads and resume cursors.

    Every method raises ``errors.Unavailable`` (503 with ``Retry-After``) when Redis cannot serve
    it right now — a stall, a lost connection, a failover, a slot being moved — and never lets a
    topology event through as anything else.
    """

    async def write(self, feed: str, items: Sequence[WriteItem]) -> list[bytes]:
        """Add (or upsert) ``items`` in ``feed`` atomically; the stored bodies in order."""

    async def replace(self, feed: str, items: Sequence[ReplaceItem]) -> list[ItemResult]:
        """Replace activities of ``feed`` (each item on its own)."""

    async def delete(
        self, feed: str, ids: Sequence[str], *, actor: str, may_override: bool, expected_version: int | None = None
    ) -> list[ItemResult]:
        """Delete activities of ``feed`` by id (each on its own)."""

    async def find(self, feed: str, refs: Sequence[tuple[str, str, str]]) -> list[bytes | None]:
        """Bodies by ``(id, "", "")`` or ``("", foreign_id, time)`` refs; None where there is none."""

    async def find_foreign_id(self, feed: str, foreign_id: str) -> list[bytes]:
        """Every body of ``feed`` with this ``foreign_id``."""

    async def marks(
        self, feed: str, mode: str, ids: Sequence[str] = (), *, all_: bool = False
    ) -> tuple[int, int, list[bool], list[bool]]:
        """Mark a notification feed's ids ``seen``/``read`` (or read ``counts``)."""

    async def cursor(self, feed: str, since: tuple[str, int] | None = None) -> CursorResult:
        """The feed's (epoch, seq); with ``since`` also the change events after it."""

    async def page(
        self,
        feed: str,
        *,
        lt: str = "",
        lt_inclusive: bool = False,
        lt_score: int | None = None,
        gt: str = "",
        gt_inclusive: bool = False,
        gt_score: int | None = None,
        ascending: bool = False,
        want: int,
        budget: int,
        sees_all: bool,
        sub: str | None,
        member: bool,
        roles: Sequence[str] = (),
        verb: str | None = None,
        actor: str | None = None,
    ) -> PageResult:
        """Up to ``want`` activities between the bounds that the reader may see and that match the
        filters, examining at most ``budget`` (see ``FeedStore.page``)."""

    async def get(self, feed: str, activity_id: str) -> bytes | None:
        """The stored body of one activity, or None."""

    async def ping(self) -> bool:
        """True if Redis answers (on a cluster: every master)."""

    async def close(self) -> None:
        """Let work in flight finish and close connections."""


class Broker(Protocol):
    """Live events: this process's pub/sub subscriptions to feeds' channels.

    Built with callbacks ``on_event(feed, data)`` and ``on_resync(feeds)`` (``feeds`` None: every
    feed), both called from the event loop; ``on_resync`` comes once the named feeds' channels are
    confirmed again after any window in which events may have been missed.
    """

    async def start(self) -> None:
        """Start; returns once connected (or after the subscribe timeout)."""

    async def close(self) -> None:
        """Stop and close every connection."""

    async def subscribe(self, feed: str) -> None:
        """Return once events of ``feed`` flow to ``on_event``; ``errors.Unavailable`` if they can't."""

    def unsubscribe(self, feed: str) -> None:
        """Stop receiving events of ``feed`` (ordered after earlier subscribes)."""

    @property
    def connected(self) -> bool:
        """True while live events can flow."""

    async def check_ready(self, timeout: float) -> None:
        """A pub/sub round trip (per master on a cluster); ``errors.Unavailable`` with a reason if not."""


class Pipeline(Protocol):
    """How ``FeedStore`` sends commands: queued per key, coalesced into pipelined round trips.

    Commands on one key's slot keep their issue order. Futures get the reply, or the error reply /
    connection error as an exception (``FeedStore`` turns transient ones into 503).
    """

    def script(self, source: str) -> str:
        """Register a Lua script (loaded on every node as needed); returns its SHA1."""

    def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Any], *, acks: int = 0) -> asyncio.Future[Any]:
        """Queue a script call; with ``acks`` > 0 it also waits (``WAIT``) for that many replicas."""

    def command(self, key: str, *args: Any) -> asyncio.Future[Any]:
        """Queue a command routed by ``key``."""

    async def ping(self) -> None:
        """PING every master; raises on the first that does not answer."""

    async def close(self) -> None:
        """Wait for pipelines in flight, then close every connection."""
