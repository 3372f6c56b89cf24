"""The GetStream surface of SPEC §12 (follows, aggregated and notification reads, reactions, users,
collections), on the same services as the native API, in GetStream's paths and shapes.

Paths (under ``/api/v1.0/``) as the official clients send them: ``feed/{f}/follows/`` (Python) and
``feed/{f}/following/`` (JS) for follow/unfollow/list, ``feed/{f}/followers/``, ``follow_many/``,
``unfollow_many/``, ``stats/follow/``, ``reaction/…``, ``user/…`` (the Python client writes
``user//<id>``), ``collections/…`` (likewise ``collections//<name>``).

Scopes: server-side tokens need ``resource`` ``follower`` (follows), ``reactions``, ``users`` or
``collections`` (or ``*``); user tokens follow from their own feeds, react and manage their own
user and objects as themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ...acl import ALL_RIGHTS, Principal, follow_origin
from ...aggregation import AggregationService
from ...follow_service import FollowService
from ...model_routes import Enricher, discarded_actors, enrich_flags
from ...reactions import EnrichFlags
from ..getstream.api import GetStreamApi
from .auth import SERVER_SUB, Caller
from .shapes import does_not_exist, feed_name, feed_of_target, input_error, their_time, to_theirs, truthy

Handler = Callable[[Request, Caller], Awaitable[tuple[int, dict[str, Any]]]]


def _int(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return max(0, min(int(raw), high))
    except ValueError:
        raise input_error(f"{name} must be an integer", {name: ["an integer"]}) from None


def _follow_json(row: Any) -> dict[str, Any]:
    at = their_time(row.created_at)
    return {"feed_id": row.feed_id, "target_id": row.target_id, "created_at": at, "updated_at": at}


def _reaction(doc: dict[str, Any]) -> dict[str, Any]:
    """A reaction in GetStream's shape: their times, ``latest_children``/``children_counts`` (and
    ``own_children`` when asked for) with child reactions in the same shape."""
    out = {k: v for k, v in doc.items() if k not in ("created_at", "updated_at")}
    out["created_at"], out["updated_at"] = their_time(doc["created_at"]), their_time(doc["updated_at"])
    for field in ("latest_children", "own_children"):
        if field in out:
            out[field] = {kind: [_reaction(c) for c in children] for kind, children in out[field].items()}
    out.setdefault("latest_children", {})
    out.setdefault("children_counts", {})
    return out


def _object(doc: dict[str, Any] | None) -> dict[str, Any]:
    if doc is None:
        return {}
    out = dict(doc)
    for key in ("created_at", "updated_at"):
        if isinstance(out.get(key), str):
            out[key] = their_time(out[key])
    return out


class GetStreamModel:
    """Registers the SPEC §12 handlers on a ``GetStreamApi``."""

    def __init__(self, follows: FollowService, aggregation: AggregationService, enricher: Enricher) -> None:
        self.follows = follows
        self.aggregation = aggregation
        self.enricher = enricher
        self.reactions = enricher.reactions
        self.objects = enricher.objects
        self.api: GetStreamApi | None = None

    def __call__(self, api: GetStreamApi) -> None:
        """Attach to ``api`` (``getstream_routes(model=...)``)."""
        self.api = api
        e = api._endpoint
        f = "/feed/{slug}/{user_id}/"
        routes: list[BaseRoute] = []
        for spelling in ("follows/", "following/"):
            routes += [
                Route(f + spelling, e(self.follow), methods=["POST"]),
                Route(f + spelling, e(self.following), methods=["GET"]),
                Route(f + spelling + "{target}/", e(self.unfollow), methods=["DELETE"]),
                Route(f + spelling + "{target}", e(self.unfollow), methods=["DELETE"]),
            ]
        routes += [
            Route(f + "followers/", e(self.followers), methods=["GET"]),
            Route("/follow_many/", e(self.follow_many), methods=["POST"]),
            Route("/unfollow_many/", e(self.unfollow_many), methods=["POST"]),
            Route("/stats/follow/", e(self.stats), methods=["GET"]),
            Route("/reaction/", e(self.add_reaction), methods=["POST"]),
            Route("/reaction/{by:str}/{value:str}/", e(self.filter_reactions), methods=["GET"]),
            Route("/reaction/{by:str}/{value:str}/{kind:str}/", e(self.filter_reactions), methods=["GET"]),
        ]
        for tail in ("{id}", "{id}/"):
            routes += [
                Route("/reaction/" + tail, e(self.get_reaction), methods=["GET"]),
                Route("/reaction/" + tail, e(self.update_reaction), methods=["PUT"]),
                Route("/reaction/" + tail, e(self.delete_reaction), methods=["DELETE"]),
            ]
        for base in ("/user/", "/user//"):
            routes.append(Route(base, e(self.add_user), methods=["POST"]))
            for tail in ("{id}", "{id}/"):
                routes += [
                    Route(base + tail, e(self.get_user), methods=["GET"]),
                    Route(base + tail, e(self.update_user), methods=["PUT"]),
                    Route(base + tail, e(self.delete_user), methods=["DELETE"]),
                ]
        routes += [
            Route("/collections/", e(self.upsert_objects), methods=["POST"]),
            Route("/collections/", e(self.select_objects), methods=["GET"]),
            Route("/collections/", e(self.delete_objects), methods=["DELETE"]),
        ]
        for base in ("/collections/", "/collections//"):
            for tail in ("{collection}", "{collection}/"):
                routes.append(Route(base + tail, e(self.add_object), methods=["POST"]))
            for tail in ("{collection}/{id}", "{collection}/{id}/"):
                routes += [
                    Route(base + tail, e(self.get_object), methods=["GET"]),
                    Route(base + tail, e(self.update_object), methods=["PUT"]),
                    Route(base + tail, e(self.delete_object), methods=["DELETE"]),
                ]
        api.extra_routes = routes
        api.group_read = self.group_read
        api.shape_page = self.shape_page

    # -- principals ----------------------------------------------------------------------------

    @staticmethod
    def _global(caller: Caller, resource: str, action: str = "*") -> Principal:
        """The principal of a call on a global resource (reactions, users, collections)."""
        if caller.is_user:
            return Principal(sub=caller.user_id, feeds=(("*", 1),), kind="getstream")
        caller.allow(resource, action)
        return Principal(sub=SERVER_SUB, admin=True, feeds=(("*", ALL_RIGHTS),), kind="getstream")

    def _follower(self, caller: Caller, feed: str, action: str, targets: list[str] = ()) -> Principal:  # type: ignore[assignment]
        if caller.is_user:
            if not caller.covers_feed(feed):
                caller.allow("feed", "write", [feed])  # raises NotAllowed in GetStream's shape
            return Principal(
                sub=caller.user_id, feeds=((feed, ALL_RIGHTS), *((t, 1) for t in targets)), kind="getstream"
            )
        caller.allow("follower", action, [feed])
        return Principal(sub=SERVER_SUB, feeds=((feed, ALL_RIGHTS), *((t, 1) for t in targets)), kind="getstream")

    async def _body(self, request: Request) -> Any:
        assert self.api is not None
        return await self.api._body(request)

    # -- follows -------------------------------------------------------------------------------

    async def follow(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST feed/{f}/follows/`` (or ``following/``) ``{"target", "activity_copy_limit"}``."""
        feed = feed_name(request.path_params["slug"], request.path_params["user_id"])
        raw = await self._body(request)
        target = feed_of_target(raw.get("target")) if isinstance(raw, dict) else None
        if not target:
            raise input_error("target is required", {"target": ["a feed id"]})
        principal = self._follower(caller, feed, "write", [target])
        await self.follows.follow(principal, feed, target, copy_limit=raw.get("activity_copy_limit"))
        return 201, {}

    async def unfollow(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``DELETE feed/{f}/follows/{target}/?keep_history=``."""
        feed = feed_name(request.path_params["slug"], request.path_params["user_id"])
        principal = self._follower(caller, feed, "delete")
        keep = truthy(request.query_params.get("keep_history"))
        await self.follows.unfollow(principal, feed, request.path_params["target"], keep_history=keep)
        return 200, {}

    async def _listing(self, request: Request, caller: Caller, side: str) -> tuple[int, dict[str, Any]]:
        feed = feed_name(request.path_params["slug"], request.path_params["user_id"])
        principal = self._follower(caller, feed, "read")
        only = [f for f in (request.query_params.get("filter") or "").split(",") if f]
        rows = await self.follows.listing(
            principal,
            feed,
            side=side,
            offset=_int(request, "offset", 0, 1_000_000),
            limit=max(1, _int(request, "limit", 25, 500)),
            only=only,
        )
        return 200, {"results": [_follow_json(r) for r in rows]}

    async def following(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET feed/{f}/follows/`` (or ``following/``)."""
        return await self._listing(request, caller, "following")

    async def followers(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET feed/{f}/followers/``."""
        return await self._listing(request, caller, "followers")

    async def follow_many(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST follow_many/?activity_copy_limit=`` ``[{"source", "target"}]``."""
        caller.allow("follower", "write")
        raw = await self._body(request)
        limit_raw = request.query_params.get("activity_copy_limit")
        limit = int(limit_raw) if limit_raw and limit_raw.isdigit() else None
        pairs = [{"source": p.get("source"), "target": p.get("target")} for p in raw if isinstance(p, dict)]
        await self.follows.follow_many(self._global(caller, "follower", "write"), pairs, copy_limit=limit)
        return 201, {}

    async def unfollow_many(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST unfollow_many/`` ``[{"source", "target", "keep_history"}]``."""
        caller.allow("follower", "delete")
        raw = await self._body(request)
        await self.follows.unfollow_many(self._global(caller, "follower", "delete"), raw)
        return 201, {}

    async def stats(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET stats/follow/?followers=&following=&followers_slugs=&following_slugs=``."""
        q = request.query_params
        principal = self._global(caller, "*", "*")
        results: dict[str, Any] = {}
        for side in ("followers", "following"):
            feed = q.get(side)
            if feed:
                slugs = [s for s in (q.get(f"{side}_slugs") or "").split(",") if s]
                stats = await self.follows.stats(
                    principal,
                    feed,
                    followers_slugs=slugs if side == "followers" else (),
                    following_slugs=slugs if side == "following" else (),
                )
                results[side] = stats[side]
        return 200, {"results": results}

    # -- reads ---------------------------------------------------------------------------------

    async def group_read(self, request: Request, caller: Caller, feed: str) -> dict[str, Any] | None:
        """Aggregated and notification feeds read as groups (GetStream's shape); None for flat feeds."""
        kind = self.aggregation.groups.of(feed).type
        if kind == "flat":
            return None
        q = request.query_params
        principal = caller.principal([feed])
        page = await self.aggregation.read(
            principal,
            feed,
            limit=max(1, _int(request, "limit", 25, 100)),
            id_lt=q.get("id_lt") or "",
            offset=_int(request, "offset", 0, 1000),
            mark_seen=_mark(q.get("mark_seen")),
            mark_read=_mark(q.get("mark_read")),
            discard=frozenset(discarded_actors(q)),
        )
        results = []
        for group in page.groups:
            activities = await self._theirs(principal, [orjson.dumps(a) for a in group["activities"]], q)
            results.append(
                {
                    **group,
                    "activities": activities,
                    "created_at": their_time(group["created_at"] or ""),
                    "updated_at": their_time(group["updated_at"] or ""),
                }
            )
        out: dict[str, Any] = {"results": results, "next": ""}
        if page.unseen is not None:
            out["unseen"], out["unread"] = page.unseen, page.unread
        return out

    async def shape_page(self, principal: Principal, bodies: list[bytes], params: Any) -> list[Any] | None:
        """A flat page that needs more than the plain shape (reactions, references, discarded
        actors, follow copies' ``origin``); None to let the dialect render it as usual."""
        wanted = (
            enrich_flags(params).any or discarded_actors(params) or any(b'"SU:' in b or b'"SO:' in b for b in bodies)
        )
        if not wanted and not any(b'"via":"follow"' in b for b in bodies):
            return None
        return await self._theirs(principal, bodies, params)

    async def _theirs(self, principal: Principal, bodies: list[bytes], params: Any) -> list[dict[str, Any]]:
        docs = [orjson.loads(b) for b in bodies]
        discard = discarded_actors(params)
        if discard:
            docs = [
                d
                for d in docs
                if to_theirs(d)["actor"] not in discard and to_theirs(d)["actor"] not in {f"SU:{a}" for a in discard}
            ]
        await self.reactions.enrich(principal, docs, enrich_flags(params))
        out = []
        for doc in docs:
            theirs = to_theirs(doc)
            origin = follow_origin(doc)
            if origin is not None:
                theirs["origin"] = origin
                theirs.pop("via", None)
            for field in ("own_reactions", "latest_reactions"):
                if field in theirs:
                    theirs[field] = {k: [_reaction(r) for r in v] for k, v in theirs[field].items()}
            out.append(theirs)
        await self.objects.enrich(out)
        return [
            {
                k: _object(v) if isinstance(v, dict) and "data" in v and k in ("actor", "object", "target") else v
                for k, v in o.items()
            }
            for o in out
        ]

    # -- reactions -----------------------------------------------------------------------------

    async def _activity_feed(self, activity_id: str) -> str:
        assert self.api is not None
        [feeds] = await self.api.index.by_ids([activity_id])
        if not feeds:
            raise does_not_exist(f"activity {activity_id} does not exist")
        return feeds[0]

    async def add_reaction(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST reaction/`` ``{kind, activity_id | parent, user_id, data, target_feeds}``."""
        principal = self._global(caller, "reactions", "write")
        raw = await self._body(request)
        if not isinstance(raw, dict):
            raise input_error("a reaction object is required")
        body = {k: v for k, v in raw.items() if v is not None}
        if not body.get("parent"):
            feed = await self._activity_feed(str(body.get("activity_id") or ""))
            body["feed"] = feed
            principal = _with_feed(principal, feed)
        body["target_feeds"] = [feed_of_target(t) for t in body.get("target_feeds") or []]
        if body["target_feeds"] and not principal.admin:
            principal = Principal(
                sub=principal.sub, feeds=(*principal.feeds, *((t, 2) for t in body["target_feeds"])), kind="getstream"
            )
        return 201, _reaction(await self.reactions.add(principal, body))

    async def get_reaction(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET reaction/{id}``."""
        principal = self._global(caller, "reactions", "read")
        return 200, _reaction(await self.reactions.get(principal, request.path_params["id"]))

    async def update_reaction(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``PUT reaction/{id}`` ``{data, target_feeds}``."""
        principal = self._global(caller, "reactions", "write")
        raw = await self._body(request)
        body = {k: v for k, v in (raw or {}).items() if v is not None}
        return 201, _reaction(await self.reactions.update(principal, request.path_params["id"], body))

    async def delete_reaction(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``DELETE reaction/{id}``."""
        principal = self._global(caller, "reactions", "delete")
        await self.reactions.delete(principal, request.path_params["id"])
        return 200, {}

    async def filter_reactions(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET reaction/{activity_id|reaction_id|user_id}/{value}/[{kind}/]?limit&id_lt&id_gt``."""
        principal = self._global(caller, "reactions", "read")
        by, value = request.path_params["by"], request.path_params["value"]
        q = request.query_params
        feed = ""
        if by == "activity_id":
            feed = await self._activity_feed(value)
            principal = _with_feed(principal, feed)
        results = await self.reactions.listing(
            principal,
            by,
            value,
            kind=request.path_params.get("kind", ""),
            limit=max(1, _int(request, "limit", 10, 100)),
            id_lt=q.get("id_lt") or "",
            id_gt=q.get("id_gt") or "",
            feed=feed,
            flags=EnrichFlags(own_children=truthy(q.get("with_own_children"))),
        )
        out: dict[str, Any] = {"results": [_reaction(r) for r in results], "next": ""}
        if by == "activity_id" and truthy(q.get("with_activity_data")):
            raw = await self.reactions.feeds.get(principal, feed, value)
            out["activity"] = to_theirs(orjson.loads(raw))
        return 200, out

    # -- users ---------------------------------------------------------------------------------

    async def add_user(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST user/?get_or_create=`` ``{id, data}``."""
        principal = self._global(caller, "users", "write")
        raw = await self._body(request)
        user, created = await self.objects.add_user(
            principal, raw, get_or_create=truthy(request.query_params.get("get_or_create"))
        )
        return (201 if created else 200), _object(user)

    async def get_user(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET user/{id}``."""
        principal = self._global(caller, "users", "read")
        return 200, _object(await self.objects.get_user(principal, request.path_params["id"]))

    async def update_user(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``PUT user/{id}`` ``{data}``."""
        principal = self._global(caller, "users", "write")
        raw = await self._body(request)
        return 201, _object(await self.objects.update_user(principal, request.path_params["id"], raw))

    async def delete_user(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``DELETE user/{id}``."""
        principal = self._global(caller, "users", "delete")
        await self.objects.delete_user(principal, request.path_params["id"])
        return 200, {}

    # -- collections ---------------------------------------------------------------------------

    async def add_object(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST collections/{name}`` ``{id, data, user_id}``."""
        principal = self._global(caller, "collections", "write")
        raw = await self._body(request)
        body = {k: v for k, v in (raw or {}).items() if v is not None}
        return 201, _object(await self.objects.add_object(principal, request.path_params["collection"], body))

    async def get_object(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET collections/{name}/{id}``."""
        principal = self._global(caller, "collections", "read")
        p = request.path_params
        return 200, _object(await self.objects.get_object(principal, p["collection"], p["id"]))

    async def update_object(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``PUT collections/{name}/{id}`` ``{data}``."""
        principal = self._global(caller, "collections", "write")
        raw = await self._body(request)
        p = request.path_params
        return 201, _object(await self.objects.update_object(principal, p["collection"], p["id"], raw))

    async def delete_object(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``DELETE collections/{name}/{id}``."""
        principal = self._global(caller, "collections", "delete")
        p = request.path_params
        await self.objects.delete_object(principal, p["collection"], p["id"])
        return 200, {}

    async def upsert_objects(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``POST collections/`` ``{"data": {name: [{id, …fields}]}}``: the fields are the data."""
        principal = self._global(caller, "collections", "write")
        raw = await self._body(request)
        data = raw.get("data") if isinstance(raw, dict) else None
        if not isinstance(data, dict):
            raise input_error("data must map collections to lists", {"data": ["an object"]})
        out: dict[str, list[dict[str, Any]]] = {}
        for name, items in data.items():
            out[name] = []
            for i, item in enumerate(items if isinstance(items, list) else []):
                if not isinstance(item, dict):
                    raise input_error(f"data.{name}.{i} must be an object", {f"data.{name}.{i}": ["an object"]})
                fields = {
                    "id": item.get("id"),
                    "user_id": item.get("user_id"),
                    "data": {k: v for k, v in item.items() if k not in ("id", "user_id")},
                }
                stored = await self.objects.add_object(principal, name, fields, upsert=True)
                out[name].append(_object(stored))
        return 201, {"data": out}

    async def select_objects(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``GET collections/?foreign_ids=name:id,…``."""
        principal = self._global(caller, "collections", "read")
        refs = []
        for ref in (request.query_params.get("foreign_ids") or "").split(","):
            name, _, object_id = ref.partition(":")
            if name and object_id:
                refs.append((name, object_id))
        found = await self.objects.select(principal, refs)
        return 200, {"response": {"data": [_object(o) for o in found]}}

    async def delete_objects(self, request: Request, caller: Caller) -> tuple[int, dict[str, Any]]:
        """``DELETE collections/?collection_name=&ids=a,b``."""
        principal = self._global(caller, "collections", "delete")
        q = request.query_params
        name = q.get("collection_name") or ""
        ids = [i for raw in q.getlist("ids") for i in raw.split(",") if i]
        for object_id in ids:
            try:
                await self.objects.delete_object(principal, name, object_id)
            except Exception:  # noqa: S112 - missing ids are fine, as GetStream answers
                continue
        return 200, {}


def _mark(value: str | None) -> str:
    if not value:
        return ""
    return "true" if value.lower() in ("true", "1") else value


def _with_feed(principal: Principal, feed: str) -> Principal:
    """A user-token principal that may read ``feed`` (reactions are added where the activity lives;
    the audience still decides what it sees)."""
    if principal.admin:
        return principal
    return Principal(sub=principal.sub, feeds=(*principal.feeds, (feed, 1)), kind="getstream")
