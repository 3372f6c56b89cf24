"""The read seam of the feed service: single activities, history pages and live subscriptions.

History pages are filtered by visibility inside Redis (the page script); follow copies pass that
filter and are judged here by their origin feed's rule, a short page being refilled from where the
scan stopped, and the activities skipped for the caller are counted (``Page.hidden``). Live
subscriptions are the hub's; this part only checks rights and hands over the caller's viewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .acl import Principal, Right, Viewer
from .backends.base import Store
from .errors import Invalid, NotFound
from .hub import Hub, Peer
from .models import ulid_ms
from .protocol import Ref
from .rights import require

#: Extra page reads when follow copies hidden from the reader left a page short.
_COPY_REFILLS = 4
#: Upper bound on activities examined for one history page (hidden or filtered ones included).
MAX_SCAN = 2000


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A history read: bounds (activity ids), paging and filters."""

    limit: int = 25
    id_lt: str | None = None
    id_lte: str | None = None
    id_gt: str | None = None
    id_gte: str | None = None
    offset: int = 0
    verb: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page, newest first, with the query of the next page (None at the end)."""

    bodies: list[bytes]
    next: dict[str, Any] | None
    hidden: int = 0  # activities scanned for this page that the caller may not see


class Reads:
    """Reads and subscriptions: ``get``, ``read``, ``subscribe``, ``reauthorize``, ``unsubscribe``."""

    def __init__(self, store: Store, hub: Hub, *, max_page: int) -> None:
        self.store = store
        self.hub = hub
        self.max_page = max_page

    async def get(self, principal: Principal, feed: str, activity_id: str) -> bytes:
        """One activity; 404 when it is missing or hidden from the caller."""
        require(principal, feed, Right.READ)
        body = await self.store.get(feed, activity_id)
        if body is None or not principal.viewer(feed).can_see(orjson.loads(body)):
            raise NotFound(f"activity {activity_id} not found in {feed}")
        return body

    async def read(self, principal: Principal, feed: str, query: PageQuery) -> Page:
        """A history page, newest first, filtered by visibility, verb and actor."""
        require(principal, feed, Right.READ)
        viewer = principal.viewer(feed)
        if not 1 <= query.limit <= self.max_page:
            raise Invalid(
                f"limit must be between 1 and {self.max_page}",
                errors=[{"loc": "limit", "msg": f"1..{self.max_page}", "type": "range"}],
            )
        lt, lt_incl, gt, gt_incl = _bounds(query)
        ascending = bool(gt) and not lt  # only a lower bound: the nearest newer ones
        want = query.offset + query.limit
        matched: list[tuple[str, bytes]] = []
        hidden = 0
        for _ in range(_COPY_REFILLS):
            found = await self.store.page(
                feed,
                lt=lt,
                lt_inclusive=lt_incl,
                lt_score=ulid_ms(lt) if lt else None,
                gt=gt,
                gt_inclusive=gt_incl,
                gt_score=ulid_ms(gt) if gt else None,
                ascending=ascending,
                want=want + 1 - len(matched),  # one more than needed: tells whether a next page exists
                budget=MAX_SCAN,
                sees_all=viewer.admin,
                sub=viewer.sub,
                member=viewer.member,
                roles=sorted(viewer.roles),
                verb=query.verb,
                actor=query.actor,
            )
            exhausted, last_id = found.exhausted, found.last_examined
            # Follow copies pass the Lua filter and are judged here, by their origin feed's rule
            # (acl.Viewer.can_see): a page with hidden copies is refilled from where it stopped.
            kept = _visible(viewer, found.ids, found.bodies)
            matched += kept
            hidden += found.hidden + len(found.ids) - len(kept)
            if len(kept) == len(found.ids) or exhausted or not last_id or len(matched) > want:
                break
            if ascending:
                gt, gt_incl = last_id, False
            else:
                lt, lt_incl = last_id, False
        page = matched[query.offset : want]
        next_query = _next_page(query, page, len(matched) > want, exhausted, last_id, ascending)
        bodies_out = [raw for _, raw in page]
        if ascending:
            bodies_out.reverse()
        return Page(bodies_out, next_query, hidden)

    # -- live ----------------------------------------------------------------------------------

    async def subscribe(
        self, peer: Peer, principal: Principal, feed: str, since: tuple[str, int] | None, ref: Ref
    ) -> None:
        """Subscribe a connection to ``feed`` (replies and events go to ``peer``)."""
        require(principal, feed, Right.READ)
        await self.hub.subscribe(peer, feed, principal.viewer(feed), since, ref)

    def reauthorize(self, peer: Peer, principal: Principal) -> list[str]:
        """Apply a connection's new principal to its subscriptions; returns the feeds it lost."""

        def viewer_of(feed: str) -> Viewer | None:
            return principal.viewer(feed) if principal.rights(feed) & Right.READ else None

        return self.hub.reauthorize(peer, viewer_of)

    def unsubscribe(self, peer: Peer, feed: str) -> bool:
        """Stop a connection's subscription; False if it had none."""
        return self.hub.unsubscribe(peer, feed)


def _bounds(query: PageQuery) -> tuple[str, bool, str, bool]:
    """The page's upper and lower bound ids ("" for none), each with whether it is inclusive."""
    lt, lt_incl = (query.id_lte, True) if query.id_lte else (query.id_lt or "", False)
    gt, gt_incl = (query.id_gte, True) if query.id_gte else (query.id_gt or "", False)
    return lt, lt_incl, gt, gt_incl


def _visible(viewer: Viewer, ids: Sequence[str], bodies: Sequence[bytes]) -> list[tuple[str, bytes]]:
    """The (id, body) pairs the viewer may see: follow copies are judged by their origin's rule,
    everything else already passed the page script's filter."""
    return [
        (i, raw)
        for i, raw in zip(ids, bodies, strict=True)
        if b'"via":"follow"' not in raw or viewer.can_see(orjson.loads(raw))
    ]


def _next_page(
    query: PageQuery,
    page: Sequence[tuple[str, bytes]],
    more: bool,
    exhausted: bool,
    last_id: str | None,
    ascending: bool,
) -> dict[str, Any] | None:
    """The query of the next page, or None at the end. ``more``: a match exists after ``page``."""
    if more:  # at least one more match exists after this page
        return _next_query(query, page[-1][0], ascending)
    if not exhausted and last_id:  # scan budget spent on hidden/filtered ones: go on from there
        return _next_query(query, last_id, ascending)
    return None


def _next_query(query: PageQuery, edge: str, ascending: bool) -> dict[str, Any]:
    """The query of the page after the one that ended at activity ``edge``."""
    out: dict[str, Any] = {"limit": query.limit}
    if ascending:
        out["id_gt"] = edge
    else:
        out["id_lt"] = edge
        if query.id_gte:
            out["id_gte"] = query.id_gte
        elif query.id_gt:
            out["id_gt"] = query.id_gt
    if query.verb:
        out["verb"] = query.verb
    if query.actor:
        out["actor"] = query.actor
    return out
