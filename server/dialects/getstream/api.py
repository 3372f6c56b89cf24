"""The GetStream Activity Feeds v2 HTTP surface (SPEC §11) under ``/api/v1.0/``, on our service.

Every handler only maps: GetStream request → our activity (``shapes``), through ``FeedService``
(the one write path, the one audience rule, the same live events), and the stored activity →
GetStream's shape. Follows, reactions, users and collections (SPEC §12) will add handlers here
with the same ``_endpoint`` wrapper, scopes (``resource`` ``follower``/``reactions``/``users``/
``collections``) and error shapes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from ...acl import Principal
from ...errors import FeedError, Forbidden, NotFound, PreconditionFailed
from ...http import json_response, read_json
from ...service import FeedService, PageQuery
from .auth import Caller, GetStreamAuth
from .index import ActivityIndex
from .shapes import (
    RenderCache,
    as_getstream,
    content_id,
    does_not_exist,
    error_body,
    feed_name,
    feed_of_target,
    input_error,
    keep_unchanged_refs,
    lookup_time,
    set_dotted,
    to_ours,
    to_theirs,
    truthy,
    unset_dotted,
)

PREFIX = "/api/v1.0"
#: Where ``POST activities/`` puts an activity whose (foreign_id, time) no feed holds yet.
DETACHED_FEED = "_getstream:detached"
#: Fields a partial update may not touch (they identify the activity).
_FIXED = frozenset({"id", "foreign_id", "time", "origin"})
_CAS_ATTEMPTS = 4

_CORS = {"Access-Control-Allow-Origin": "*"}
_PREFLIGHT = {
    **_CORS,
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Stream-Auth-Type, X-Stream-Client",
    "Access-Control-Max-Age": "86400",
}

Handler = Callable[[Request, Caller], Awaitable[tuple[int, dict[str, Any]]]]


def _duration(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.2f}ms"


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise input_error(f"{name} must be an integer", {name: ["an integer"]}) from None


class GetStreamApi:
    """``/api/v1.0/`` handlers, bound to one service and one GetStream app."""

    def __init__(
        self,
        service: FeedService,
        auth: GetStreamAuth,
        index: ActivityIndex,
        *,
        max_body_bytes: int,
    ) -> None:
        self.service = service
        self.auth = auth
        self.index = index
        self.max_body_bytes = max_body_bytes
        self.render = RenderCache()
        # SPEC §12 (server/dialects/getstream/model.py): more routes, aggregated/notification reads,
        # and pages that need reshaping (reactions, SU:/SO: references, discard_actors, follow copies).
        self.extra_routes: list[BaseRoute] = []
        self.group_read: Callable[[Request, Caller, str], Awaitable[dict[str, Any] | None]] | None = None
        self.shape_page: Callable[[Principal, list[bytes], Any], Awaitable[list[Any] | None]] | None = None

    def routes(self) -> list[BaseRoute]:
        """Starlette routes of the GetStream dialect (paths end with ``/``, as the clients send them),
        under one ``Mount`` so that requests elsewhere pay a single prefix test for all of them."""
        e = self._endpoint
        feed = "/feed/{slug}/{user_id}/"
        routes: list[BaseRoute] = [
            *self.extra_routes,  # first: feed/{f}/follows/{target}/ must not reach the remove route
            Route("/feed/add_to_many/", e(self.add_to_many), methods=["POST"]),
            Route(feed, e(self.add), methods=["POST"]),
            Route(feed, e(self.read), methods=["GET"]),
            Route("/enrich" + feed, e(self.read), methods=["GET"]),
            Route(feed + "{activity_id:path}", e(self.remove), methods=["DELETE"]),
            Route("/activities/", e(self.get_activities), methods=["GET"]),
            Route("/enrich/activities/", e(self.get_activities), methods=["GET"]),
            Route("/activities/", e(self.update_activities), methods=["POST"]),
            Route("/activity/", e(self.partial_update), methods=["POST"]),
            Route("/feed_targets/{slug}/{user_id}/activity_to_targets/", e(self.update_to_targets), methods=["POST"]),
            Route("/{rest:path}", self._preflight, methods=["OPTIONS"]),
            Route("/{rest:path}", self._unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
        return [Mount(PREFIX, routes=routes)]

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Authenticate (key, then token), run, and answer in GetStream's shape with ``duration``."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                caller = self.auth.caller(request.query_params.get("api_key"), request.headers.get("authorization"))
                status, body = await handler(request, caller)
            except FeedError as exc:
                error = as_getstream(exc)
                status, body = error.status, error_body(error, _duration(started))
            else:
                body["duration"] = _duration(started)
            return json_response(body, status, _CORS if "origin" in request.headers else None)

        return endpoint

    async def _unknown(self, request: Request) -> Response:
        error = does_not_exist(f"no such endpoint: {request.method} {request.url.path}")
        return json_response(error_body(error, "0.00ms"), error.status, _CORS)

    async def _preflight(self, request: Request) -> Response:
        """Browsers call the API cross-origin (the JS client in a web app): any origin may, since
        every call carries its token in a header, never a cookie."""
        return Response(status_code=204, headers=_PREFLIGHT)

    @staticmethod
    def _feed(request: Request) -> str:
        return feed_name(request.path_params["slug"], request.path_params["user_id"])

    async def _body(self, request: Request) -> Any:
        return await read_json(request, self.max_body_bytes)

    # -- writes ------------------------------------------------------------------------------------

    def _prepare(self, caller: Caller, raws: Sequence[Any], batch: bool) -> tuple[list[dict[str, Any]], str | None]:
        """GetStream activities → ours (content ids for feed-less dedupe); the user's write identity."""
        items = [to_ours(raw, loc=f"activities.{i}" if batch else "") for i, raw in enumerate(raws)]
        actors = {item["actor"] for item in items if isinstance(item.get("actor"), str)}
        for actor in actors:
            caller.check_actor(actor)
        if caller.is_user and len(actors) > 1:
            raise input_error("a batch written with a user token must use one actor form")
        for item in items:
            caller.check_targets(item.get("to") or ())
            if "time" in item and "foreign_id" not in item:
                item["id"] = content_id(item)
        return items, next(iter(actors), None)

    async def _post(self, caller: Caller, feed: str, items: list[dict[str, Any]], sub: str | None) -> list[Any]:
        targets = {t for item in items for t in item.get("to") or ()}
        principal = caller.principal([feed], sub=sub, targets=targets)
        bodies = await self.service.post(principal, feed, items, batch=True)  # indexed by the after_post hook
        return [orjson.loads(b) for b in bodies]

    async def add(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST feed/{slug}/{id}/``: one activity (→ it) or ``{"activities": [...]}`` (→ them)."""
        feed = self._feed(request)
        caller.allow("feed", "write", [feed])
        raw = await self._body(request)
        batch = isinstance(raw, dict) and isinstance(raw.get("activities"), list)
        raws = raw["activities"] if batch else [raw]
        if batch and not raws:
            return 201, {"activities": []}
        items, sub = self._prepare(caller, raws, batch)
        docs = await self._post(caller, feed, items, sub)
        if batch:
            return 201, {"activities": [to_theirs(d) for d in docs]}
        return 201, to_theirs(docs[0])

    async def add_to_many(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST feed/add_to_many/`` ``{"activity", "feeds"}``: the same activity (one id) in each feed."""
        raw = await self._body(request)
        if not isinstance(raw, dict) or not isinstance(raw.get("feeds"), list):
            raise input_error("give {activity, feeds}", {"feeds": ["a list of feed ids"]})
        feeds = list(dict.fromkeys(feed_of_target(f) for f in raw["feeds"]))
        if len(feeds) > self.service.max_batch:
            raise input_error(f"at most {self.service.max_batch} feeds")
        caller.allow("feed", "write", feeds)
        [item], sub = self._prepare(caller, [raw.get("activity")], False)
        for feed in feeds:
            [doc] = await self._post(caller, feed, [dict(item)], sub)
            item["id"] = doc["id"]  # the same activity everywhere
        return 201, {}

    async def remove(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``DELETE feed/{slug}/{id}/{activity_id}/`` (``?foreign_id=1``: by foreign id); unknown is fine."""
        feed = self._feed(request)
        caller.allow("feed", "delete", [feed])
        target = request.path_params["activity_id"].rstrip("/")
        by_foreign_id = truthy(request.query_params.get("foreign_id"))
        refused: Forbidden | None = None
        for principal in self._identities(caller, feed):
            try:
                if by_foreign_id:
                    await self.service.delete_foreign_id(principal, feed, target)
                else:
                    await self.service.delete(principal, feed, target)
                    await self.index.forget([(target, "", feed)])
            except NotFound:
                break  # unknown (or hidden from the caller): GetStream answers 200
            except Forbidden as exc:  # not this identity's: try the user's other actor form
                refused = exc
                continue
            refused = None
            break
        if refused is not None:
            raise refused
        return 200, {"removed": target}

    @staticmethod
    def _identities(caller: Caller, feed: str) -> list[Principal]:
        """A user's two actor forms (``<id>``, ``SU:<id>``): changes need the author's identity."""
        if caller.is_user:
            return [caller.principal([feed]), caller.principal([feed], sub=f"SU:{caller.user_id}")]
        return [caller.principal([feed])]

    # -- reads -------------------------------------------------------------------------------------

    async def read(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET [enrich/]feed/{slug}/{id}/``: newest first, ``limit``/``offset``/``id_*`` bounds."""
        feed = self._feed(request)
        caller.allow("feed", "read", [feed])
        q = request.query_params
        if self.group_read is not None and (grouped := await self.group_read(request, caller, feed)) is not None:
            return 200, grouped
        limit = min(max(_int(request, "limit", 25), 1), self.service.max_page)
        offset = max(_int(request, "offset", 0), 0)
        query = PageQuery(
            limit=limit,
            offset=offset,
            id_lt=q.get("id_lt") or None,
            id_lte=q.get("id_lte") or None,
            id_gt=q.get("id_gt") or None,
            id_gte=q.get("id_gte") or None,
        )
        principal = caller.principal([feed])
        page = await self.service.read(principal, feed, query)
        shaped = None if self.shape_page is None else await self.shape_page(principal, page.bodies, q)
        results: list[Any] = self.render.fragments(page.bodies) if shaped is None else shaped
        next_url = ""
        if page.next is not None:
            params = {**page.next, "api_key": self.auth.api_key}
            slug, user_id = request.path_params["slug"], request.path_params["user_id"]
            next_url = f"{PREFIX}/feed/{slug}/{user_id}/?{urlencode(params)}"
        return 200, {"results": results, "next": next_url}

    async def _find(self, principal: Principal, feed: str, ref: tuple[str, str, str]) -> dict[str, Any] | None:
        """One stored activity of ``feed`` by id or (foreign_id, time), if ``principal`` sees it."""
        [raw] = await self.service.store.find(feed, [ref])
        if raw is None:
            return None
        doc: dict[str, Any] = orjson.loads(raw)
        return doc if principal.viewer(feed).can_see(doc) else None

    async def _locate(
        self, caller: Caller, refs: Sequence[tuple[str, str, str]]
    ) -> list[list[tuple[str, dict[str, Any]]]]:
        """For each (id, foreign_id, time) ref: the (feed, activity) pairs holding it that the caller
        may read, origin first."""
        by_id = await self.index.by_ids([r[0] for r in refs if r[0]])
        by_pair = await self.index.by_pairs([(r[1], r[2]) for r in refs if not r[0]])
        it_id, it_pair = iter(by_id), iter(by_pair)
        out = []
        misses: list[tuple[str, str, str]] = []
        for ref in refs:
            feeds = next(it_id) if ref[0] else next(it_pair)
            found = []
            for feed in feeds:
                if caller.is_user or caller.covers_feed(feed):
                    principal = caller.principal([feed]) if not caller.is_user else _reader(caller, feed)
                    [raw] = await self.service.store.find(feed, [ref])
                    if raw is None:
                        misses.append((ref[0], "" if ref[0] else self.index.pair(ref[1], ref[2]), feed))
                        continue
                    doc: dict[str, Any] = orjson.loads(raw)
                    if principal.viewer(feed).can_see(doc):
                        found.append((feed, doc))
            out.append(found)
        await self.index.forget(misses)
        return out

    async def get_activities(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET [enrich/]activities/?ids=`` or ``?foreign_ids=&timestamps=`` (unknown ones skipped)."""
        caller.allow("activities", "read")
        q = request.query_params
        refs: list[tuple[str, str, str]]
        if q.get("ids"):
            refs = [(i, "", "") for i in q["ids"].split(",") if i]
        elif q.get("foreign_ids") is not None:
            fids, stamps = q["foreign_ids"].split(","), (q.get("timestamps") or "").split(",")
            if len(fids) != len(stamps):
                raise input_error("foreign_ids and timestamps must pair up", {"timestamps": ["one per foreign id"]})
            refs = [("", f, lookup_time(t)) for f, t in zip(fids, stamps, strict=True)]
        else:
            raise input_error("give ids, or foreign_ids and timestamps", {"ids": ["required"]})
        if len(refs) > self.service.max_page:
            raise input_error(f"at most {self.service.max_page} activities per request")
        found = await self._locate(caller, refs)
        return 200, {"results": [to_theirs(hits[0][1]) for hits in found if hits]}

    # -- changes -----------------------------------------------------------------------------------

    async def _replace(
        self, principal: Principal, feed: str, old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        body = await self.service.replace(principal, feed, old["id"], keep_unchanged_refs(new, old), if_match=None)
        doc: dict[str, Any] = orjson.loads(body)
        return doc

    def _batch(self, raw: Any, name: str) -> list[Any]:
        items = raw.get(name) if isinstance(raw, dict) else None
        if not isinstance(items, list) or not items:
            raise input_error(f"{name} must be a non-empty list", {name: ["a non-empty list"]})
        if len(items) > self.service.max_batch:
            raise input_error(f"at most {self.service.max_batch} {name} per request")
        return items

    async def update_activities(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST activities/``: full replacements by (foreign_id, time); an unknown pair creates it."""
        caller.allow("activities", "write")
        items = self._batch(await self._body(request), "activities")
        for i, raw in enumerate(items):
            if not isinstance(raw, dict) or raw.get("foreign_id") in (None, ""):
                raise input_error("every activity needs a foreign_id", {f"activities.{i}.foreign_id": ["required"]})
            if raw.get("time") in (None, ""):
                raise input_error("every activity needs a time", {f"activities.{i}.time": ["required"]})
            lookup_time(raw["time"])
        news = [to_ours(raw, loc=f"activities.{i}") for i, raw in enumerate(items)]
        found = await self._locate(caller, [("", n["foreign_id"], n["time"]) for n in news])
        for raw, new, hits in zip(items, news, found, strict=True):
            if not hits:
                caller.allow("activities", "write", [DETACHED_FEED])
                await self._post(caller, DETACHED_FEED, [new], None)
                continue
            origin = hits[0][1]
            if "to" in raw and sorted(new.get("to") or ()) != sorted(origin.get("to") or ()):
                raise input_error("to targets cannot be changed by an update", {"to": ["use activity_to_targets"]})
            for feed, old in hits:
                change = dict(new)
                if "to" not in raw and old.get("to"):
                    change["to"] = old["to"]
                targets = change.get("to") or ()
                await self._replace(caller.principal([feed], targets=targets), feed, old, change)
        return 201, {}

    async def partial_update(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST activity/`` ``{"changes": [{id | foreign_id+time, set, unset}]}`` → the updated activities."""
        caller.allow("activities", "write")
        changes = self._batch(await self._body(request), "changes")
        refs = []
        for i, change in enumerate(changes):
            if not isinstance(change, dict):
                raise input_error("each change must be an object")
            set_, unset = change.get("set") or {}, change.get("unset") or []
            if not isinstance(set_, dict) or not isinstance(unset, list) or not all(isinstance(u, str) for u in unset):
                raise input_error("set must be an object and unset a list of paths", {f"changes.{i}": ["set/unset"]})
            touched = {p.split(".")[0] for p in [*set_, *unset]}
            if touched & _FIXED:
                raise input_error(f"cannot change {', '.join(sorted(touched & _FIXED))}", {f"changes.{i}": ["fixed"]})
            if isinstance(change.get("id"), str) and change["id"]:
                refs.append((change["id"], "", ""))
            elif change.get("foreign_id") and change.get("time"):
                refs.append(("", str(change["foreign_id"]), lookup_time(change["time"])))
            else:
                raise input_error("each change needs id, or foreign_id and time", {f"changes.{i}.id": ["required"]})
        found = await self._locate(caller, refs)
        updated = []
        for change, ref, hits in zip(changes, refs, found, strict=True):
            if not hits:
                raise does_not_exist(f"activity {ref[0] or ref[1]} not found")
            results = [await self._patch(caller, feed, old, change) for feed, old in hits]
            updated.append(to_theirs(results[0]))
        return 201, {"activities": updated}

    async def _patch(self, caller: Caller, feed: str, old: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
        ref = (old["id"], "", "")
        for _ in range(_CAS_ATTEMPTS):
            theirs = to_theirs(old)
            for path in change.get("unset") or ():
                unset_dotted(theirs, path)
            for path, value in (change.get("set") or {}).items():
                set_dotted(theirs, path, value)
            new = to_ours(theirs)
            principal = caller.principal([feed], targets=new.get("to") or ())
            try:
                body = await self.service.replace(
                    principal, feed, old["id"], keep_unchanged_refs(new, old), if_match=old.get("version")
                )
            except PreconditionFailed:
                fresh = await self._find(principal, feed, ref)
                if fresh is None:
                    raise does_not_exist(f"activity {old['id']} not found") from None
                old = fresh
                continue
            doc: dict[str, Any] = orjson.loads(body)
            return doc
        raise input_error(f"activity {old['id']} keeps changing; retry")

    async def update_to_targets(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST feed_targets/{slug}/{id}/activity_to_targets/``: new, added or removed ``to`` targets."""
        feed = self._feed(request)
        caller.allow("feed_targets", "write", [feed])
        raw = await self._body(request)
        specs = raw if isinstance(raw, list) else [raw]
        body: dict[str, Any] = {}
        for spec in specs:
            body = await self._retarget(caller, feed, spec)
        return 201, body

    async def _retarget(self, caller: Caller, feed: str, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict) or not spec.get("foreign_id") or not spec.get("time"):
            raise input_error("give foreign_id and time", {"foreign_id": ["required"], "time": ["required"]})
        ref = ("", str(spec["foreign_id"]), lookup_time(spec["time"]))
        old = await self._find(caller.principal([feed]), feed, ref)
        if old is None:
            raise does_not_exist(f"activity {spec['foreign_id']} at {spec['time']} not found in {feed}")
        before = list(old.get("to") or ())

        def targets(name: str) -> list[str] | None:
            value = spec.get(name)
            if value is None:
                return None
            if not isinstance(value, list):
                raise input_error(f"{name} must be a list", {name: ["a list of feed ids"]})
            return [feed_of_target(t) for t in value]

        new, added, removed = targets("new_targets"), targets("added_targets") or [], targets("removed_targets") or []
        if new is not None and (added or removed):
            raise input_error("give new_targets, or added_targets/removed_targets")
        after = new if new is not None else [t for t in [*before, *added] if t not in removed]
        after = list(dict.fromkeys(after))
        caller.check_targets(after)
        theirs = to_theirs(old)
        theirs.pop("to", None)
        change = to_ours(theirs)
        if after:
            change["to"] = after
        doc = await self._replace(caller.principal([feed], targets=after), feed, old, change)
        return {
            "activity": to_theirs(doc),
            "added": [t for t in after if t not in before],
            "removed": [t for t in before if t not in after],
        }


def _reader(caller: Caller, feed: str) -> Principal:
    """A user token reading an activity by id: may read it where it lives, filtered by audience."""
    from ...acl import Right

    return Principal(sub=caller.user_id, feeds=((feed, Right.READ),), kind="getstream")


__all__ = ["DETACHED_FEED", "PREFIX", "GetStreamApi"]
