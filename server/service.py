"""Use cases: post, read, get, subscribe. Rights, audience and enrichment are decided here.

The HTTP routes, the WebSocket endpoint and the seed dialects all go through this one service, so
every way in obeys the same rules and writes through the same store path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .acl import Principal, Right, Viewer
from .errors import FeedError, Forbidden, Invalid, NotFound, PayloadTooLarge, Unauthorized, Unavailable
from .hub import Hub, Peer
from .metrics import Metrics
from .models import (
    ActivityIn,
    build_body,
    check_feed_name,
    dumps,
    format_time,
    new_id,
    now,
    parse_activity,
    parse_audience,
    time_ms,
    ulid_ms,
)
from .protocol import Ref
from .store import FeedStore, WriteItem

#: Upper bound on activities examined for one history page (hidden or filtered ones included).
MAX_SCAN = 2000
#: JSON bytes the write script adds around the caller's part of an activity (id, seq, version…).
_SERVER_FIELDS_BYTES = 96


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


class FeedService:
    """The server's use cases; one per process, built in ``app.py``."""

    def __init__(
        self,
        store: FeedStore,
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
        self.default_audience = parse_audience(list(default_audience))
        self.max_activity_bytes = max_activity_bytes
        self.max_batch = max_batch
        self.max_page = max_page

    # -- rights --------------------------------------------------------------------------------

    @staticmethod
    def require(principal: Principal, feed: str, right: Right) -> Right:
        """The principal's rights on ``feed`` if they include ``right``; else 401/403."""
        check_feed_name(feed)
        rights = principal.rights(feed)
        if not rights & right:
            if not principal.authenticated:
                raise Unauthorized(f"authentication required for feed {feed}")
            raise Forbidden(f"no {right.name.lower() if right.name else 'such'} right on feed {feed}")
        return rights

    # -- writes --------------------------------------------------------------------------------

    async def post(self, principal: Principal, feed: str, raw_items: Sequence[Any], *, batch: bool) -> list[bytes]:
        """Add activities to ``feed`` (one, or a batch of up to ``max_batch``); returns stored bodies."""
        rights = self.require(principal, feed, Right.WRITE)
        if batch and not raw_items:
            raise Invalid(
                "activities must not be empty",
                errors=[{"loc": "activities", "msg": "at least one activity", "type": "too_short"}],
            )
        if len(raw_items) > self.max_batch:
            raise PayloadTooLarge(f"at most {self.max_batch} activities per request")
        parsed: list[ActivityIn] = []
        errors: list[dict[str, Any]] = []
        for i, raw in enumerate(raw_items):
            try:
                parsed.append(parse_activity(raw, loc=f"activities.{i}" if batch else ""))
            except Invalid as exc:
                errors.extend(exc.errors or [])
        if errors:
            detail = "; ".join(f"{e['loc']}: {e['msg']}" if e["loc"] else e["msg"] for e in errors[:5])
            raise Invalid(detail, errors=errors)
        is_admin = bool(rights & Right.ADMIN)
        stamp = format_time(now())
        items = [
            self._write_item(principal, feed, item, i if batch else None, is_admin, stamp)
            for i, item in enumerate(parsed)
        ]
        started = time.perf_counter()
        try:
            bodies = await self.store.write(feed, items)
        except Unavailable:
            self.metrics.redis_errors.inc()
            raise
        self.metrics.write_latency.observe(time.perf_counter() - started)
        self.metrics.writes.labels("create").inc(len(bodies))
        return bodies

    def _write_item(
        self, principal: Principal, feed: str, item: ActivityIn, index: int | None, is_admin: bool, stamp: str
    ) -> WriteItem:
        loc = "" if index is None else f"activities.{index}."
        actor = self._actor(principal, item, is_admin, loc)
        audience = [entry.as_json() for entry in item.audience] if item.audience is not None else self.default_audience
        when = item.time or now()
        activity_id = item.id or new_id(when)
        body = build_body(item, feed=feed, actor=actor, audience=audience, when=when, updated_at=stamp)
        rest = dumps(body)
        size = len(rest) + len(dumps(activity_id)) + _SERVER_FIELDS_BYTES
        if size > self.max_activity_bytes:
            raise PayloadTooLarge(
                f"{loc or 'activity'} is {size} bytes encoded; the limit is {self.max_activity_bytes}",
                errors=[{"loc": loc.rstrip(".") or "activity", "msg": "activity too large", "type": "too_large"}],
            )
        return WriteItem(
            id=activity_id,
            client_id=item.id is not None,
            foreign_id=item.foreign_id,
            time=body["time"],
            score=time_ms(when),
            actor=actor["id"],
            may_override=is_admin,
            created_at=stamp,
            rest=rest,
        )

    @staticmethod
    def _actor(principal: Principal, item: ActivityIn, is_admin: bool, loc: str) -> dict[str, Any]:
        """The stored actor: the caller by default; another actor only for feed admins."""
        if item.actor is None:
            if principal.sub is None:  # pragma: no cover - writers are authenticated
                raise Unauthorized("authentication required")
            return principal.actor()
        given = {"id": item.actor} if isinstance(item.actor, str) else item.actor.model_dump(exclude_none=True)
        if given["id"] != principal.sub and not is_admin:
            raise Forbidden(f"{loc}actor: only feed admins may write as another actor")
        if given["id"] == principal.sub:
            given = {**principal.actor(), **given}
        return given

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, principal: Principal, feed: str, activity_id: str) -> bytes:
        """One activity; 404 when it is missing or hidden from the caller."""
        self.require(principal, feed, Right.READ)
        body = await self.store.get(feed, activity_id)
        if body is None or not principal.viewer(feed).can_see(orjson.loads(body)):
            raise NotFound(f"activity {activity_id} not found in {feed}")
        return body

    async def read(self, principal: Principal, feed: str, query: PageQuery) -> Page:
        """A history page, newest first, filtered by visibility, verb and actor."""
        self.require(principal, feed, Right.READ)
        viewer = principal.viewer(feed)
        if not 1 <= query.limit <= self.max_page:
            raise Invalid(
                f"limit must be between 1 and {self.max_page}",
                errors=[{"loc": "limit", "msg": f"1..{self.max_page}", "type": "range"}],
            )
        lt, lt_incl = (query.id_lte, True) if query.id_lte else (query.id_lt or "", False)
        gt, gt_incl = (query.id_gte, True) if query.id_gte else (query.id_gt or "", False)
        ascending = bool(gt) and not lt  # only a lower bound: the nearest newer ones
        want = query.offset + query.limit
        chunk = min(max(want + 1, 50), 500)
        matched: list[tuple[str, bytes]] = []
        scanned = 0
        last_id: str | None = None
        exhausted = False
        while len(matched) <= want and scanned < MAX_SCAN and not exhausted:
            bodies = await self.store.read_chunk(
                feed,
                lt=lt,
                lt_inclusive=lt_incl,
                lt_score=ulid_ms(lt) if lt else None,
                gt=gt,
                gt_inclusive=gt_incl,
                gt_score=ulid_ms(gt) if gt else None,
                ascending=ascending,
                count=chunk,
            )
            exhausted = len(bodies) < chunk
            for raw in reversed(bodies) if ascending else bodies:
                doc = orjson.loads(raw)
                scanned += 1
                last_id = doc["id"]
                if _matches(doc, viewer, query):
                    matched.append((last_id, raw))
                    if len(matched) > want:
                        break
            if ascending and last_id:
                gt, gt_incl = last_id, False
            elif last_id:
                lt, lt_incl = last_id, False
        page = matched[query.offset : want]
        next_query = None
        if len(matched) > want:  # at least one more match exists after this page
            next_query = _next_query(query, page[-1][0], ascending)
        elif not exhausted and last_id:  # scan budget spent on hidden/filtered ones: go on from there
            next_query = _next_query(query, last_id, ascending)
        bodies_out = [raw for _, raw in page]
        if ascending:
            bodies_out.reverse()
        return Page(bodies_out, next_query)

    # -- live ----------------------------------------------------------------------------------

    async def subscribe(
        self, peer: Peer, principal: Principal, feed: str, since: tuple[str, int] | None, ref: Ref
    ) -> None:
        """Subscribe a connection to ``feed`` (replies and events go to ``peer``)."""
        self.require(principal, feed, Right.READ)
        await self.hub.subscribe(peer, feed, principal.viewer(feed), since, ref)

    def unsubscribe(self, peer: Peer, feed: str) -> bool:
        """Stop a connection's subscription; False if it had none."""
        return self.hub.unsubscribe(peer, feed)


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


def _matches(doc: dict[str, Any], viewer: Viewer, query: PageQuery) -> bool:
    if query.verb is not None and doc.get("verb") != query.verb:
        return False
    if query.actor is not None:
        actor = doc.get("actor")
        if (actor.get("id") if isinstance(actor, dict) else actor) != query.actor:
            return False
    return viewer.can_see(doc)


__all__ = ["FeedError", "FeedService", "Page", "PageQuery"]
