"""The write seam of the feed service: new activities, replacements, patches and deletes.

Every write is validated (pydantic), its actor and audience resolved, its size checked and its body
encoded once before the store's scripts run it. Changes to a stored activity read it, check the
caller's right to change it and write only if nobody changed it meanwhile: a client version
(``If-Match``) makes a concurrent change a 412, no version means recompute and retry. After every
write the activity's `to`/notification copies are brought in line (``server/copies.py``), and after
a ``post`` the ``after_post`` hooks run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .acl import Principal, Right, Rights, actor_id
from .backends.base import ItemResult, ReplaceItem, Store, WriteItem
from .copies import Copies
from .errors import (
    Conflict,
    FeedError,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
)
from .metrics import Metrics
from .models import (
    ActivityIn,
    IdGenerator,
    PatchIn,
    apply_patch,
    build_body,
    check_feed_name,
    dumps,
    format_time,
    now,
    parse_activity,
    parse_audience,
    parse_patch,
    parse_time,
    time_ms,
    visibility,
)
from .rights import require

#: The feed service's logger: writes are part of it.
log = logging.getLogger("feedserver.service")

#: A validated activity and the input it was validated from (stored as given: ``build_body``).
Input = tuple[ActivityIn, Any]

#: Attempts of a read-compute-write cycle that lost a race before giving up with 409.
_CAS_ATTEMPTS = 8
#: JSON bytes the write script adds around the caller's part of an activity (id, seq, version…).
_SERVER_FIELDS_BYTES = 96


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One item of a batch update: its HTTP-like status and the stored body or the error."""

    index: int
    status: int
    body: bytes | None
    error: FeedError | None = None


class Writes:
    """Writes and changes: ``post``, ``replace``, ``patch``, ``delete``, ``delete_foreign_id``, batch updates."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        copies: Copies,
        *,
        default_audience: Sequence[str],
        max_activity_bytes: int,
        max_batch: int,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.copies = copies
        self.default_audience = parse_audience(list(default_audience))
        self.max_activity_bytes = max_activity_bytes
        self.max_batch = max_batch
        self._new_id = IdGenerator()
        #: Awaited after each successful ``post`` with (feed, stored bodies): dialects that keep their
        #: own lookups (the GetStream id index) learn of every new activity, whichever API wrote it.
        #: A hook's failure is logged; the write stands.
        self.after_post: list[Callable[[str, list[bytes]], Awaitable[None]]] = []
        #: Awaited after each successful ``delete`` / ``delete_foreign_id`` with (feed, the removed
        #: activities' last bodies), whichever API deleted: reactions of those activities go with them.
        #: A hook's failure is logged; the deletion stands.
        self.after_delete: list[Callable[[str, list[dict[str, Any]]], Awaitable[None]]] = []

    # -- writes --------------------------------------------------------------------------------

    async def post(self, principal: Principal, feed: str, raw_items: Sequence[Any], *, batch: bool) -> list[bytes]:
        """Add activities to ``feed`` (one, or a batch of up to ``max_batch``); returns stored bodies."""
        rights = require(principal, feed, Right.WRITE)
        parsed = self._parse_new(raw_items, batch=batch)
        is_admin = bool(rights & Right.ADMIN)
        clock = now()  # one reading per request: its activities share created_at and default time
        stamp = format_time(clock)
        for item, _ in parsed:
            self.copies.check_copy_targets(principal, feed, item)
        items = [
            self._write_item(principal, feed, given, i if batch else None, is_admin, clock, stamp)
            for i, given in enumerate(parsed)
        ]
        started = time.perf_counter()
        try:
            bodies = await self.store.write(feed, items)
        except Unavailable:
            self.metrics.redis_errors.inc()
            raise
        self.metrics.write_latency.observe(time.perf_counter() - started)
        self.metrics.writes.labels("create").inc(len(bodies))
        if any(item.to or any(e.notify for e in item.audience or ()) for item, _ in parsed):
            await self.copies.sync_copies(feed, [(None, orjson.loads(raw)) for raw in bodies])
        for hook in self.after_post:
            try:
                await hook(feed, bodies)
            except Exception:
                log.exception("after-post hook failed for %s", feed)
        return bodies

    async def _deleted(self, feed: str, docs: list[dict[str, Any]]) -> None:
        """Run the ``after_delete`` hooks for activities just removed from ``feed``."""
        for hook in self.after_delete:
            try:
                await hook(feed, docs)
            except Exception:
                log.exception("after-delete hook failed for %s", feed)

    def _parse_new(self, raw_items: Sequence[Any], *, batch: bool) -> list[Input]:
        """Validate the activities of a ``post``: all of them, every error reported at once (422)."""
        if batch and not raw_items:
            raise Invalid(
                "activities must not be empty",
                errors=[{"loc": "activities", "msg": "at least one activity", "type": "too_short"}],
            )
        if len(raw_items) > self.max_batch:
            raise PayloadTooLarge(f"at most {self.max_batch} activities per request")
        parsed: list[Input] = []
        errors: list[dict[str, Any]] = []
        for i, raw in enumerate(raw_items):
            try:
                parsed.append((parse_activity(raw, loc=f"activities.{i}" if batch else ""), raw))
            except Invalid as exc:
                errors.extend(exc.errors or [])
        if errors:
            detail = "; ".join(f"{e['loc']}: {e['msg']}" if e["loc"] else e["msg"] for e in errors[:5])
            raise Invalid(detail, errors=errors)
        return parsed

    def _write_item(
        self,
        principal: Principal,
        feed: str,
        given: Input,
        index: int | None,
        is_admin: bool,
        clock: datetime,
        stamp: str,
        old: dict[str, Any] | None = None,
    ) -> WriteItem:
        """Encode one activity for the write scripts. For a replacement (``old`` given) the stored
        actor, time and audience are the defaults, instead of the caller, now and the configured one."""
        item, source = given
        loc = "" if index is None else f"activities.{index}."
        if item.actor is None and old is not None:
            actor = old["actor"]
        else:
            actor = self._actor(principal, item, is_admin, loc)
        if item.audience is not None:
            audience = [entry.as_json() for entry in item.audience]
        else:
            audience = old.get("audience", self.default_audience) if old is not None else self.default_audience
        when = item.time or (parse_time(old["time"]) if old is not None else clock)
        ms = time_ms(when)
        activity_id = item.id or self._new_id(ms)
        time_text = stamp if when is clock else format_time(when)
        body = build_body(item, source, feed=feed, actor=actor, audience=audience, time=time_text, updated_at=stamp)
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
            score=ms,
            actor=actor["id"],
            may_override=is_admin,
            created_at=stamp,
            rest=rest,
            vis=visibility(actor["id"], item.verb, audience),
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

    # -- changes -------------------------------------------------------------------------------

    async def replace(
        self, principal: Principal, feed: str, activity_id: str, raw: Any, *, if_match: int | None
    ) -> bytes:
        """PUT: replace an activity (``actor``, ``time`` and ``audience`` default to the stored ones)."""
        rights = require(principal, feed, Right.WRITE)
        item = parse_activity(raw)
        if item.id is not None and item.id != activity_id:
            raise Invalid(
                "the body's id differs from the URL's",
                errors=[{"loc": "id", "msg": "must match the URL", "type": "value_error"}],
            )
        expected = if_match if if_match is not None else item.version
        return await self._change(principal, feed, rights, (activity_id, "", ""), expected, (item, raw))

    async def patch(
        self, principal: Principal, feed: str, activity_id: str, raw: Any, *, if_match: int | None
    ) -> bytes:
        """PATCH: ``set``/``unset`` dotted paths, then validate the result like any activity."""
        rights = require(principal, feed, Right.WRITE)
        patch = parse_patch(raw)
        expected = if_match if if_match is not None else patch.version
        return await self._change(
            principal,
            feed,
            rights,
            (activity_id, "", ""),
            expected,
            patch,
        )

    async def delete(self, principal: Principal, feed: str, activity_id: str, *, if_match: int | None = None) -> None:
        """Delete one activity (its author or a feed admin; 404 when the caller cannot see it)."""
        rights = require(principal, feed, Right.WRITE)
        [raw] = await self.store.find(feed, [(activity_id, "", "")])
        self._check_may_change(principal, feed, rights, raw, activity_id)
        [result] = await self.store.delete(
            feed,
            [activity_id],
            actor=principal.sub or "",
            may_override=bool(rights & Right.ADMIN),
            expected_version=if_match,
        )
        self._raise_for(result, activity_id, client_version=if_match)
        self.metrics.writes.labels("delete").inc()
        doc = orjson.loads(raw or b"{}")
        await self.copies.sync_copies(feed, [(doc, None)])
        await self._deleted(feed, [{**doc, "id": activity_id}])

    async def delete_foreign_id(self, principal: Principal, feed: str, foreign_id: str) -> int:
        """Delete every activity of ``feed`` with ``foreign_id`` that the caller sees; returns how many.

        A non-admin must be the author of every one it can see (else 403, nothing removed); the ones
        it cannot see are left alone, exactly as if they did not exist.
        """
        rights = require(principal, feed, Right.WRITE)
        viewer = principal.viewer(feed)
        visible = [
            doc for doc in map(orjson.loads, await self.store.find_foreign_id(feed, foreign_id)) if viewer.can_see(doc)
        ]
        is_admin = bool(rights & Right.ADMIN)
        if not is_admin and any(actor_id(doc) != principal.sub for doc in visible):
            raise Forbidden(f"activities with foreign_id {foreign_id!r} belong to other actors")
        if not visible:
            return 0
        results = await self.store.delete(
            feed, [doc["id"] for doc in visible], actor=principal.sub or "", may_override=is_admin
        )
        removed = sum(r.status == "ok" for r in results)
        self.metrics.writes.labels("delete").inc(removed)
        gone = [doc for doc, r in zip(visible, results, strict=True) if r.status == "ok"]
        await self.copies.sync_copies(feed, [(doc, None) for doc in gone])
        if gone:
            await self._deleted(feed, gone)
        return removed

    async def batch_update(self, principal: Principal, raw_items: Any) -> list[ItemOutcome]:
        """Full replacements identified by ``feed`` + ``foreign_id`` + ``time``; one outcome per item."""
        items = self._batch_list(raw_items, "activities")
        outcomes = []
        for i, raw in enumerate(items):
            try:
                feed, ref = _batch_ref(raw, require_time_ref=True)
                rights = require(principal, feed, Right.WRITE)
                source = {k: v for k, v in raw.items() if k != "feed"}
                item = parse_activity(source)
                body = await self._change(principal, feed, rights, ref, item.version, (item, source))
                outcomes.append(ItemOutcome(i, 200, body))
            except FeedError as exc:
                outcomes.append(ItemOutcome(i, exc.status, None, exc))
        return outcomes

    async def batch_partial_update(self, principal: Principal, raw_items: Any) -> list[ItemOutcome]:
        """``set``/``unset`` changes identified by ``feed`` + ``id`` or ``feed`` + ``foreign_id`` + ``time``."""
        items = self._batch_list(raw_items, "changes")
        outcomes = []
        for i, raw in enumerate(items):
            try:
                feed, ref = _batch_ref(raw, require_time_ref=False)
                rights = require(principal, feed, Right.WRITE)
                patch = parse_patch({k: raw[k] for k in ("set", "unset", "version") if k in raw})
                body = await self._change(
                    principal,
                    feed,
                    rights,
                    ref,
                    patch.version,
                    patch,
                )
                outcomes.append(ItemOutcome(i, 200, body))
            except FeedError as exc:
                outcomes.append(ItemOutcome(i, exc.status, None, exc))
        return outcomes

    def _batch_list(self, raw_items: Any, name: str) -> list[Any]:
        if not isinstance(raw_items, list) or not raw_items:
            raise Invalid(
                f"{name} must be a non-empty list",
                errors=[{"loc": name, "msg": "a non-empty list", "type": "list_type"}],
            )
        if len(raw_items) > self.max_batch:
            raise PayloadTooLarge(f"at most {self.max_batch} items per request")
        return raw_items

    async def _change(
        self,
        principal: Principal,
        feed: str,
        rights: Rights,
        ref: tuple[str, str, str],
        client_version: int | None,
        change: Input | PatchIn,
        *,
        through_copy: bool = True,
    ) -> bytes:
        """Read, check, build the new activity (a replacement, or the stored one patched), and write
        it only if nobody changed it meanwhile.

        With a client version (``If-Match``) a concurrent change is a 412; without one the change
        is recomputed from the newer version (optimistic concurrency, a few attempts). A change
        addressed to a copy edits its original (``_change_copy``).
        """
        is_admin = bool(rights & Right.ADMIN)
        label = ref[0] or f"{ref[1]}@{ref[2]}"
        for _ in range(_CAS_ATTEMPTS):
            [raw] = await self.store.find(feed, [ref])
            old = self._check_may_change(principal, feed, rights, raw, label)
            if client_version is not None and old.get("version") != client_version:
                raise _stale(label, old.get("version"))
            if through_copy and isinstance(old.get("origin"), str) and old["origin"] != feed:
                return await self.copies.change_copy(principal, feed, old, change, self._change_original)
            if isinstance(change, PatchIn):
                assert raw is not None
                patched = apply_patch(orjson.loads(raw), change)  # patch a fresh copy
                given: Input = (parse_activity(patched), patched)
            else:
                given = change
            self.copies.check_copy_targets(principal, feed, given[0])
            clock = now()
            write = self._write_item(principal, feed, given, None, is_admin, clock, format_time(clock), old=old)
            [result] = await self.store.replace(
                feed,
                [
                    ReplaceItem(
                        id=old["id"],
                        lookup_fid="",
                        lookup_time="",
                        expected_version=old.get("version"),
                        actor=principal.sub or "",
                        may_override=is_admin,
                        foreign_id=write.foreign_id,
                        time=write.time,
                        score=write.score,
                        rest=write.rest,
                        vis=write.vis,
                    )
                ],
            )
            if result.status == "stale" and client_version is None:
                continue  # someone else changed it between our read and write: recompute
            self._raise_for(result, label, client_version=client_version)
            self.metrics.writes.labels("update").inc()
            assert result.body is not None
            await self.copies.sync_copies(feed, [(old, orjson.loads(result.body))])
            return result.body
        raise Conflict(f"activity {label} keeps changing; retry")

    async def _change_original(
        self, principal: Principal, origin: str, rights: Rights, activity_id: str, change: Input | PatchIn
    ) -> bytes:
        """Apply a change made through a copy to its original in ``origin`` (``Copies.change_copy``)."""
        return await self._change(principal, origin, rights, (activity_id, "", ""), None, change, through_copy=False)

    def _check_may_change(
        self, principal: Principal, feed: str, rights: Rights, raw: bytes | None, label: str
    ) -> dict[str, Any]:
        """The stored activity if the caller may change it: 404 if missing or hidden, 403 if not theirs."""
        old = orjson.loads(raw) if raw is not None else None
        if old is None or not principal.viewer(feed).can_see(old):
            raise NotFound(f"activity {label} not found in {feed}")
        if not rights & Right.ADMIN and actor_id(old) != principal.sub:
            raise Forbidden("only the author or a feed admin may change or delete an activity")
        return old

    @staticmethod
    def _raise_for(result: ItemResult, label: str, *, client_version: int | None) -> None:
        if result.status == "ok":
            return
        if result.status == "stale":
            raise _stale(label, result.version)
        if result.status == "forbidden":
            raise Forbidden("only the author or a feed admin may change or delete an activity")
        if result.status == "conflict":
            raise Conflict(f"activity {label}: another activity already has this foreign_id and time")
        raise NotFound(f"activity {label} not found")


def _stale(label: str, version: Any) -> PreconditionFailed:
    return PreconditionFailed(f"activity {label} is at version {version}", extra={"version": version})


def _batch_ref(raw: Any, *, require_time_ref: bool) -> tuple[str, tuple[str, str, str]]:
    """The feed and the (id, foreign_id, time) reference of one batch item."""
    if not isinstance(raw, dict):
        raise Invalid("each item must be an object", errors=[{"loc": "", "msg": "an object", "type": "dict_type"}])
    feed = raw.get("feed")
    if not isinstance(feed, str):
        raise Invalid(
            "feed is required", errors=[{"loc": "feed", "msg": "required (ids are unique per feed)", "type": "missing"}]
        )
    check_feed_name(feed)
    activity_id, foreign_id, when = raw.get("id"), raw.get("foreign_id"), raw.get("time")
    if isinstance(activity_id, str) and activity_id and not require_time_ref:
        return feed, (activity_id, "", "")
    if not isinstance(foreign_id, str) or not foreign_id or when is None:
        need = "foreign_id and time" if require_time_ref else "id, or foreign_id and time"
        raise Invalid(f"{need} required", errors=[{"loc": "foreign_id", "msg": f"{need} required", "type": "missing"}])
    try:
        stamp = format_time(parse_time(when))
    except (TypeError, ValueError):
        raise Invalid(
            "time is not an ISO 8601 time", errors=[{"loc": "time", "msg": "ISO 8601", "type": "datetime"}]
        ) from None
    return feed, ("", foreign_id, stamp)
