"""The feed service: every use case of the native API, the WebSocket and the dialects, in one place.

The HTTP routes, the WebSocket endpoint and the seed dialects all go through this one service, so
every way in obeys the same rules and writes through the same store path. ``FeedService`` is the
public face; the work is done by three parts, split along their seams:

- ``writes.py``  post, replace, patch, delete, batch updates: rights, audience, versions (CAS)
- ``copies.py``  `to`/notification copies kept in line with their original; notification feeds
- ``reads.py``   single reads, history pages (visibility, ``hidden`` count), live subscriptions

The parts talk to the store and the hub only (never Starlette); ``rights.py`` holds the rights
check they share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .acl import Principal
from .backends.base import Store
from .copies import Copies, NotificationPage
from .errors import FeedError
from .hub import Hub, Peer
from .metrics import Metrics
from .protocol import Ref
from .reads import Page, PageQuery, Reads
from .rights import require
from .writes import ItemOutcome, Writes


class FeedService:
    """The server's use cases; one per process, built in ``app.py``."""

    def __init__(
        self,
        store: Store,
        hub: Hub,
        metrics: Metrics,
        *,
        default_audience: Sequence[str],
        max_activity_bytes: int,
        max_batch: int,
        max_page: int,
    ) -> None:
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.reads = Reads(store, hub, max_page=max_page)
        self.copies = Copies(store, self.reads)
        self.writes = Writes(
            store,
            metrics,
            self.copies,
            default_audience=default_audience,
            max_activity_bytes=max_activity_bytes,
            max_batch=max_batch,
        )

    # -- settings the dialects and routes read -------------------------------------------------

    @property
    def default_audience(self) -> list[dict[str, Any]]:
        """The audience of an activity written without one (parsed ``[feeds] default_audience``)."""
        return self.writes.default_audience

    @property
    def max_activity_bytes(self) -> int:
        """The largest encoded activity accepted."""
        return self.writes.max_activity_bytes

    @property
    def max_batch(self) -> int:
        """The most activities (or changes) in one request."""
        return self.writes.max_batch

    @property
    def max_page(self) -> int:
        """The largest history page."""
        return self.reads.max_page

    @property
    def after_post(self) -> list[Callable[[str, list[bytes]], Awaitable[None]]]:
        """Hooks awaited after each successful ``post`` with (feed, stored bodies); a hook's failure
        is logged and the write stands (``Writes.after_post``)."""
        return self.writes.after_post

    @property
    def after_delete(self) -> list[Callable[[str, list[dict[str, Any]]], Awaitable[None]]]:
        """Hooks awaited after each successful deletion with (feed, removed activities); a hook's
        failure is logged and the deletion stands (``Writes.after_delete``)."""
        return self.writes.after_delete

    # -- rights (server/rights.py) -------------------------------------------------------------

    #: The principal's rights on ``feed`` if they include ``right``; else 401/403.
    require = staticmethod(require)

    # -- writes (server/writes.py) -------------------------------------------------------------

    async def post(self, principal: Principal, feed: str, raw_items: Sequence[Any], *, batch: bool) -> list[bytes]:
        """Add activities to ``feed`` (one, or a batch of up to ``max_batch``); returns stored bodies."""
        return await self.writes.post(principal, feed, raw_items, batch=batch)

    async def replace(
        self, principal: Principal, feed: str, activity_id: str, raw: Any, *, if_match: int | None
    ) -> bytes:
        """PUT: replace an activity (``actor``, ``time`` and ``audience`` default to the stored ones)."""
        return await self.writes.replace(principal, feed, activity_id, raw, if_match=if_match)

    async def patch(
        self, principal: Principal, feed: str, activity_id: str, raw: Any, *, if_match: int | None
    ) -> bytes:
        """PATCH: ``set``/``unset`` dotted paths, then validate the result like any activity."""
        return await self.writes.patch(principal, feed, activity_id, raw, if_match=if_match)

    async def delete(self, principal: Principal, feed: str, activity_id: str, *, if_match: int | None = None) -> None:
        """Delete one activity (its author or a feed admin; 404 when the caller cannot see it)."""
        await self.writes.delete(principal, feed, activity_id, if_match=if_match)

    async def delete_foreign_id(self, principal: Principal, feed: str, foreign_id: str) -> int:
        """Delete every activity of ``feed`` with ``foreign_id`` that the caller sees; returns how many."""
        return await self.writes.delete_foreign_id(principal, feed, foreign_id)

    async def batch_update(self, principal: Principal, raw_items: Any) -> list[ItemOutcome]:
        """Full replacements identified by ``feed`` + ``foreign_id`` + ``time``; one outcome per item."""
        return await self.writes.batch_update(principal, raw_items)

    async def batch_partial_update(self, principal: Principal, raw_items: Any) -> list[ItemOutcome]:
        """``set``/``unset`` changes identified by ``feed`` + ``id`` or ``feed`` + ``foreign_id`` + ``time``."""
        return await self.writes.batch_partial_update(principal, raw_items)

    # -- notifications (server/copies.py) ------------------------------------------------------

    async def notifications(self, principal: Principal, query: PageQuery) -> NotificationPage:
        """The caller's notification feed, each activity marked ``is_seen``/``is_read``, with counts."""
        return await self.copies.notifications(principal, query)

    async def mark_notifications(self, principal: Principal, kind: str, raw: Any) -> tuple[int, int]:
        """Mark ``{"ids": [...]}`` or ``{"all": true}`` seen or read (read implies seen); new counts."""
        return await self.copies.mark_notifications(principal, kind, raw)

    # -- reads (server/reads.py) ---------------------------------------------------------------

    async def get(self, principal: Principal, feed: str, activity_id: str) -> bytes:
        """One activity; 404 when it is missing or hidden from the caller."""
        return await self.reads.get(principal, feed, activity_id)

    async def read(self, principal: Principal, feed: str, query: PageQuery) -> Page:
        """A history page, newest first, filtered by visibility, verb and actor (``Page.hidden``
        counts the scanned activities the caller may not see)."""
        return await self.reads.read(principal, feed, query)

    async def subscribe(
        self, peer: Peer, principal: Principal, feed: str, since: tuple[str, int] | None, ref: Ref
    ) -> None:
        """Subscribe a connection to ``feed`` (replies and events go to ``peer``)."""
        await self.reads.subscribe(peer, principal, feed, since, ref)

    def reauthorize(self, peer: Peer, principal: Principal) -> list[str]:
        """Apply a connection's new principal to its subscriptions; returns the feeds it lost."""
        return self.reads.reauthorize(peer, principal)

    def unsubscribe(self, peer: Peer, feed: str) -> bool:
        """Stop a connection's subscription; False if it had none."""
        return self.reads.unsubscribe(peer, feed)


__all__ = ["FeedError", "FeedService", "ItemOutcome", "NotificationPage", "Page", "PageQuery"]
