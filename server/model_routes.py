"""Native HTTP endpoints of reactions, users and collections (SPEC §12), and enriched reads.

| method and path | does |
|---|---|
| ``POST /v1/reactions`` ``{kind, activity_id, feed, data?, parent?, target_feeds?, user_id?}`` | add → 201 |
| ``GET|PUT|DELETE /v1/reactions/{id}`` | one reaction; ``PUT`` replaces ``data`` |
| ``GET /v1/reactions?activity_id=&feed=`` / ``?reaction_id=`` / ``?user_id=`` | list (``kind``, ``limit``,
  ``id_lt``, ``id_gt``) |
| ``POST /v1/users`` ``{id, data}`` (``?get_or_create=true``) | add → 201 |
| ``GET|PUT|DELETE /v1/users/{id}`` | one user |
| ``POST /v1/collections/{collection}`` ``{id?, data, user_id?}`` | add → 201 |
| ``GET|PUT|DELETE /v1/collections/{collection}/{id}`` | one object |
| ``POST /v1/collections`` ``{"data": {collection: [objects]}}`` | upsert many |
| ``GET /v1/collections?foreign_ids=coll:id,…`` | select |
| ``GET /v1/feeds/{feed}/groups`` | aggregated/notification read (``limit``, ``id_lt`` = a group id,
  ``mark_seen``/``mark_read`` = ``true`` or group ids) |
| ``POST /v1/feeds/{feed}/groups/seen`` / ``read`` ``{"ids": [group ids]}`` or ``{"all": true}`` | marks |

Feed reads (``GET /v1/feeds/{feed}/activities``) take ``with_own_reactions``, ``with_recent_reactions``,
``with_reaction_counts`` (or GetStream's ``withOwnReactions``…), ``reaction_kinds`` /
``reactionKindsFilter``, ``recent_reactions_limit``, ``enrich`` (``SU:``/``SO:`` references; on
by default) and ``discard_actors`` (with ``discard_actors_sep``, default ``,``).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import api_models as m
from .acl import Principal, actor_id
from .aggregation import AggregationService
from .errors import Invalid
from .follow_routes import query_bool, query_int
from .http import caller, json_response, read_json
from .models import dumps
from .objects import ObjectService
from .openapi import COMMON_PROBLEMS, OpenApi, Reply
from .reactions import DEFAULT_RECENT, MAX_LIMIT, EnrichFlags, ReactionService

_TRUE = ("1", "true", "yes")


def _flag(params: QueryParams, *names: str) -> bool:
    return any((params.get(n) or "").lower() in _TRUE for n in names)


def enrich_flags(params: QueryParams) -> EnrichFlags:
    """The reaction flags of a read, in the native and GetStream spellings."""
    kinds = [*params.getlist("reactionKindsFilter[]"), *params.getlist("reactionKindsFilter")]
    kinds += [k for v in params.getlist("reaction_kinds") for k in v.split(",")]
    kinds = [k for v in kinds for k in v.split(",") if k]
    raw_limit = params.get("recent_reactions_limit") or params.get("recentReactionsLimit") or ""
    limit = int(raw_limit) if raw_limit.isdigit() else DEFAULT_RECENT
    return EnrichFlags(
        own=_flag(params, "with_own_reactions", "withOwnReactions", "reactions.own"),
        recent=_flag(params, "with_recent_reactions", "withRecentReactions", "reactions.recent"),
        counts=_flag(params, "with_reaction_counts", "withReactionCounts", "reactions.counts"),
        kinds=tuple(kinds),
        recent_limit=max(1, min(limit, MAX_LIMIT)),
        own_children=_flag(params, "with_own_children", "withOwnChildren", "reactions.own_children"),
    )


def discarded_actors(params: QueryParams) -> set[str]:
    """GDPR actor discarding: ``discard_actors`` split on ``discard_actors_sep`` (default ``,``)."""
    raw = params.get("discard_actors") or ""
    sep = params.get("discard_actors_sep") or ","
    return {a.strip() for a in raw.split(sep) if a.strip()}


class Enricher:
    """Post-processes feed pages: drops discarded actors, adds reactions, expands references."""

    def __init__(self, reactions: ReactionService, objects: ObjectService) -> None:
        self.reactions = reactions
        self.objects = objects

    async def __call__(self, principal: Principal, bodies: list[bytes], params: QueryParams) -> list[bytes]:
        """The page's bodies after enrichment (unchanged bytes when nothing applies).

        Only what changes is decoded and encoded again: discarding decodes every body (rare),
        references decode and re-encode the bodies holding one, and reaction fields come from one
        script call per feed slot as JSON text spliced before each body's closing brace."""
        discard = discarded_actors(params)
        flags = enrich_flags(params)
        references = (params.get("enrich") or "true").lower() not in ("0", "false", "no")
        wants_refs = references and any(b'"SU:' in b or b'"SO:' in b for b in bodies)
        if not discard and not flags.any and not wants_refs:
            return bodies
        out = list(bodies)
        if discard:
            kept = [(b, orjson.loads(b)) for b in out]
            out = [b for b, d in kept if actor_id(d) not in discard and not _user_ref_in(d.get("actor"), discard)]
        if wants_refs:
            at = [i for i, b in enumerate(out) if b'"SU:' in b or b'"SO:' in b]
            docs = [orjson.loads(out[i]) for i in at]
            await self.objects.enrich(docs)
            for i, doc in zip(at, docs, strict=True):
                out[i] = dumps(doc)
        if flags.any and out:
            docs = [orjson.loads(b) for b in out]
            fragments = await self.reactions.fragments(principal, docs, flags)
            for i, (doc, fragment) in enumerate(zip(docs, fragments, strict=True)):
                out[i] = _splice(out[i], doc, fragment)
        return out


_REACTION_FIELDS = ("reaction_counts", "latest_reactions", "own_reactions")


def _splice(body: bytes, doc: dict[str, Any], fragment: bytes) -> bytes:
    """``body`` (the JSON of ``doc``) with the fields of ``fragment`` added at its end, as
    ``doc.update`` would (a field ``doc`` already has is replaced where it stands)."""
    if not fragment:
        return body
    if any(f in doc for f in _REACTION_FIELDS) or not body.endswith(b"}"):
        doc.update(orjson.loads(b"{" + fragment + b"}"))
        return dumps(doc)
    return body[:-1] + (b"," if doc else b"") + fragment + b"}"


def _an_object(body: Any) -> dict[str, Any]:
    """A ``PUT`` body must be an object (``{"data": {...}}``): 422 otherwise."""
    if not isinstance(body, dict):
        raise Invalid("the body must be an object", errors=[{"loc": "", "msg": "an object", "type": "dict_type"}])
    return body


def _user_ref_in(actor: Any, discard: set[str]) -> bool:
    """``SU:alice`` is discarded by ``alice`` too."""
    ident = actor.get("id") if isinstance(actor, dict) else actor
    return isinstance(ident, str) and ident.startswith("SU:") and ident[3:] in discard


def describe(openapi: OpenApi, routes: list[Route], tag: str) -> None:
    """Add each route to the OpenAPI document from its models in ``OPERATIONS`` (a route without
    an entry is an error: every route is described)."""
    for route in routes:
        doc = (route.endpoint.__doc__ or route.path).strip().splitlines()[0]
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            spec = OPERATIONS.get((route.path, method))
            if spec is None:
                raise LookupError(f"{method} {route.path} has no entry in model_routes.OPERATIONS")
            problems = {**COMMON_PROBLEMS, **spec.get("problems", {})}
            if spec.get("body") is not None:
                problems.setdefault(413, "The body is over the size limit")
            openapi.operation(
                route.path,
                method,
                summary=spec.get("summary", doc),
                description=spec.get("description", ""),
                tags=[tag],
                path_params=spec.get("path"),
                query=spec.get("query"),
                body=spec.get("body"),
                responses=spec["responses"],
                problems=problems,
            )


_FEED = "/v1/feeds/{feed}"
_MISSING = {404: "Unknown, or hidden from the caller"}
_DELETED = {204: Reply(None, "Deleted")}
#: The models of each native follow, reaction, user, collection and group route.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/demo/feed-groups.json", "GET"): {"responses": {200: m.DemoFeedGroups}},
    (f"{_FEED}/follows", "POST"): {
        "path": m.FeedPath,
        "body": m.FollowIn,
        "responses": {201: m.Followed},
        "problems": {422: "Invalid fields, an unknown feed name, or a feed following itself"},
    },
    (f"{_FEED}/follows/{{target}}", "DELETE"): {
        "path": m.FollowPath,
        "query": m.UnfollowQuery,
        "responses": {204: Reply(None, "Unfollowed (also when the feed did not follow target)")},
    },
    (f"{_FEED}/followers", "GET"): {"path": m.FeedPath, "query": m.FollowListQuery, "responses": {200: m.FollowList}},
    (f"{_FEED}/following", "GET"): {"path": m.FeedPath, "query": m.FollowListQuery, "responses": {200: m.FollowList}},
    (f"{_FEED}/follow_stats", "GET"): {
        "path": m.FeedPath,
        "query": m.FollowStatsQuery,
        "responses": {200: m.FollowStats},
    },
    ("/v1/follows", "POST"): {
        "body": m.FollowManyBody,
        "responses": {201: m.FollowsMade},
        "problems": {413: f"More than {m.MAX_FOLLOW_BATCH} follows, or a body over the size limit"},
    },
    ("/v1/unfollows", "POST"): {
        "body": m.UnfollowManyBody,
        "responses": {200: m.Unfollowed},
        "problems": {413: f"More than {m.MAX_FOLLOW_BATCH} follows, or a body over the size limit"},
    },
    (f"{_FEED}/groups", "GET"): {
        "path": m.FeedPath,
        "query": m.GroupQuery,
        "responses": {200: m.GroupPage},
    },
    (f"{_FEED}/groups/seen", "POST"): {"path": m.FeedPath, "body": m.MarkGroups, "responses": {200: m.Counts}},
    (f"{_FEED}/groups/read", "POST"): {"path": m.FeedPath, "body": m.MarkGroups, "responses": {200: m.Counts}},
    ("/v1/reactions", "POST"): {
        "body": m.ReactionIn,
        "responses": {201: m.Reaction},
        "problems": {404: "The activity or parent reaction is unknown or hidden", 409: "The chosen id is taken"},
    },
    ("/v1/reactions", "GET"): {
        "query": m.ReactionListQuery,
        "responses": {200: m.ReactionList},
        "problems": {**_MISSING, 422: "Invalid fields, or none of activity_id, reaction_id, user_id"},
    },
    ("/v1/reactions/{id}", "GET"): {"path": m.IdPath, "responses": {200: m.Reaction}, "problems": _MISSING},
    ("/v1/reactions/{id}", "PUT"): {
        "path": m.IdPath,
        "body": m.ReactionData,
        "responses": {200: m.Reaction},
        "problems": _MISSING,
    },
    ("/v1/reactions/{id}", "PATCH"): {
        "summary": "Replace a reaction's data (as PUT)",
        "path": m.IdPath,
        "body": m.ReactionData,
        "responses": {200: m.Reaction},
        "problems": _MISSING,
    },
    ("/v1/reactions/{id}", "DELETE"): {"path": m.IdPath, "responses": _DELETED, "problems": _MISSING},
    ("/v1/users", "POST"): {
        "query": m.UserQuery,
        "body": m.UserIn,
        "responses": {201: m.User, 200: Reply(m.User, "The existing user (get_or_create)")},
        "problems": {409: "The user exists (and get_or_create is off)"},
    },
    ("/v1/users/{id}", "GET"): {"path": m.IdPath, "responses": {200: m.User}, "problems": _MISSING},
    ("/v1/users/{id}", "PUT"): {
        "path": m.IdPath,
        "body": m.DataIn,
        "responses": {200: m.User},
        "problems": _MISSING,
    },
    ("/v1/users/{id}", "DELETE"): {"path": m.IdPath, "responses": _DELETED, "problems": _MISSING},
    ("/v1/collections", "POST"): {"body": m.UpsertObjects, "responses": {201: m.UpsertedObjects}},
    ("/v1/collections", "GET"): {"query": m.SelectQuery, "responses": {200: m.SelectedObjects}},
    ("/v1/collections/{collection}", "POST"): {
        "path": m.CollectionPath,
        "body": m.ObjectIn,
        "responses": {201: m.CollectionObject},
        "problems": {409: "The chosen id is taken"},
    },
    ("/v1/collections/{collection}/{id}", "GET"): {
        "path": m.ObjectPath,
        "responses": {200: m.CollectionObject},
        "problems": _MISSING,
    },
    ("/v1/collections/{collection}/{id}", "PUT"): {
        "path": m.ObjectPath,
        "body": m.DataIn,
        "responses": {200: m.CollectionObject},
        "problems": _MISSING,
    },
    ("/v1/collections/{collection}/{id}", "DELETE"): {
        "path": m.ObjectPath,
        "responses": _DELETED,
        "problems": _MISSING,
    },
}


class ModelApi:
    """Handlers of the reaction, user and collection endpoints."""

    def __init__(
        self,
        reactions: ReactionService,
        objects: ObjectService,
        aggregation: AggregationService,
        *,
        max_body_bytes: int,
    ) -> None:
        self.reactions = reactions
        self.objects = objects
        self.aggregation = aggregation
        self.enricher = Enricher(reactions, objects)
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[Route]:
        """Starlette routes."""
        return [
            Route("/v1/feeds/{feed}/groups", self.read_groups, methods=["GET"]),
            Route("/v1/feeds/{feed}/groups/seen", self.mark_groups_seen, methods=["POST"]),
            Route("/v1/feeds/{feed}/groups/read", self.mark_groups_read, methods=["POST"]),
            Route("/v1/reactions", self.add_reaction, methods=["POST"]),
            Route("/v1/reactions", self.list_reactions, methods=["GET"]),
            Route("/v1/reactions/{id}", self.get_reaction, methods=["GET"]),
            Route("/v1/reactions/{id}", self.update_reaction, methods=["PUT", "PATCH"]),
            Route("/v1/reactions/{id}", self.delete_reaction, methods=["DELETE"]),
            Route("/v1/users", self.add_user, methods=["POST"]),
            Route("/v1/users/{id}", self.get_user, methods=["GET"]),
            Route("/v1/users/{id}", self.update_user, methods=["PUT"]),
            Route("/v1/users/{id}", self.delete_user, methods=["DELETE"]),
            Route("/v1/collections", self.upsert_objects, methods=["POST"]),
            Route("/v1/collections", self.select_objects, methods=["GET"]),
            Route("/v1/collections/{collection}", self.add_object, methods=["POST"]),
            Route("/v1/collections/{collection}/{id}", self.get_object, methods=["GET"]),
            Route("/v1/collections/{collection}/{id}", self.update_object, methods=["PUT"]),
            Route("/v1/collections/{collection}/{id}", self.delete_object, methods=["DELETE"]),
        ]

    # -- aggregated and notification feeds ----------------------------------------------------

    async def read_groups(self, request: Request) -> Response:
        """Groups newest first (with is_seen/is_read and unseen/unread on notification feeds)."""
        principal = caller(request)
        q = request.query_params
        page = await self.aggregation.read(
            principal,
            request.path_params["feed"],
            limit=query_int(request, "limit", 25, 1, 100),
            id_lt=q.get("id_lt") or "",
            offset=query_int(request, "offset", 0, 0, 1000),
            mark_seen=q.get("mark_seen") or "",
            mark_read=q.get("mark_read") or "",
            discard=frozenset(discarded_actors(q)),
        )
        for group in page.groups:
            bodies = await self.enricher(principal, [dumps(a) for a in group["activities"]], q)
            group["activities"] = [orjson.loads(b) for b in bodies]
        out: dict[str, Any] = {"results": page.groups, "next": page.next}
        if page.unseen is not None:
            out["unseen"], out["unread"] = page.unseen, page.unread
        return json_response(out)

    async def mark_groups_seen(self, request: Request) -> Response:
        """Mark groups seen → the new group counts."""
        return await self._mark_groups(request, "seen")

    async def mark_groups_read(self, request: Request) -> Response:
        """Mark groups read (and seen) → the new group counts."""
        return await self._mark_groups(request, "read")

    async def _mark_groups(self, request: Request, mode: str) -> Response:
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        unseen, unread = await self.aggregation.mark(principal, request.path_params["feed"], mode, body)
        return json_response({"unseen": unseen, "unread": unread})

    # -- reactions -----------------------------------------------------------------------------

    async def add_reaction(self, request: Request) -> Response:
        """Add a reaction (to an activity, or a child reaction with ``parent``)."""
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        return json_response(await self.reactions.add(principal, body), 201)

    async def get_reaction(self, request: Request) -> Response:
        """One reaction."""
        principal = caller(request)
        flags = EnrichFlags(own_children=_flag(request.query_params, "with_own_children"))
        return json_response(await self.reactions.get(principal, request.path_params["id"], flags))

    async def update_reaction(self, request: Request) -> Response:
        """Replace a reaction's data."""
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        return json_response(await self.reactions.update(principal, request.path_params["id"], body))

    async def delete_reaction(self, request: Request) -> Response:
        """Delete a reaction."""
        principal = caller(request)
        await self.reactions.delete(principal, request.path_params["id"])
        return Response(status_code=204)

    async def list_reactions(self, request: Request) -> Response:
        """Reactions of an activity, of a reaction (children) or of a user, newest first."""
        principal = caller(request)
        q = request.query_params
        for by in ("activity_id", "reaction_id", "user_id"):
            if q.get(by):
                break
        else:
            raise Invalid(
                "give activity_id (+feed), reaction_id or user_id", errors=[{"loc": "query", "msg": "lookup"}]
            )
        results = await self.reactions.listing(
            principal,
            by,
            q[by],
            kind=q.get("kind") or "",
            limit=query_int(request, "limit", 25, 1, MAX_LIMIT),
            id_lt=q.get("id_lt") or "",
            id_gt=q.get("id_gt") or "",
            feed=q.get("feed") or "",
            flags=EnrichFlags(own_children=_flag(q, "with_own_children")),
        )
        return json_response({"results": results})

    # -- users ---------------------------------------------------------------------------------

    async def add_user(self, request: Request) -> Response:
        """Create a user (``get_or_create=true``: return the existing one)."""
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        user, created = await self.objects.add_user(principal, body, get_or_create=query_bool(request, "get_or_create"))
        return json_response(user, 201 if created else 200)

    async def get_user(self, request: Request) -> Response:
        """One user."""
        principal = caller(request)
        return json_response(await self.objects.get_user(principal, request.path_params["id"]))

    async def update_user(self, request: Request) -> Response:
        """Replace a user's data."""
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        return json_response(await self.objects.update_user(principal, request.path_params["id"], _an_object(body)))

    async def delete_user(self, request: Request) -> Response:
        """Delete a user."""
        principal = caller(request)
        await self.objects.delete_user(principal, request.path_params["id"])
        return Response(status_code=204)

    # -- collections ---------------------------------------------------------------------------

    async def add_object(self, request: Request) -> Response:
        """Create a collection object."""
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        return json_response(await self.objects.add_object(principal, request.path_params["collection"], body), 201)

    async def get_object(self, request: Request) -> Response:
        """One collection object."""
        principal = caller(request)
        p = request.path_params
        return json_response(await self.objects.get_object(principal, p["collection"], p["id"]))

    async def update_object(self, request: Request) -> Response:
        """Replace a collection object's data."""
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        p = request.path_params
        return json_response(await self.objects.update_object(principal, p["collection"], p["id"], _an_object(body)))

    async def delete_object(self, request: Request) -> Response:
        """Delete a collection object."""
        principal = caller(request)
        p = request.path_params
        await self.objects.delete_object(principal, p["collection"], p["id"])
        return Response(status_code=204)

    async def upsert_objects(self, request: Request) -> Response:
        """Create or replace many objects: ``{"data": {collection: [{id, data…}]}}``."""
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise Invalid("data must map collections to lists of objects", errors=[{"loc": "data", "msg": "object"}])
        out: dict[str, list[dict[str, Any]]] = {}
        for collection, items in data.items():
            if not isinstance(items, list):
                raise Invalid(
                    f"data.{collection} must be a list", errors=[{"loc": f"data.{collection}", "msg": "list"}]
                )
            out[collection] = []
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise Invalid(
                        f"data.{collection}.{i} must be an object",
                        errors=[{"loc": f"data.{collection}.{i}", "msg": "object"}],
                    )
                fields = {"id": item.get("id"), "user_id": item.get("user_id"), "data": item.get("data")}
                if fields["data"] is None and isinstance(item, dict):  # GetStream: the rest of the item is data
                    fields["data"] = {k: v for k, v in item.items() if k not in ("id", "user_id")}
                out[collection].append(await self.objects.add_object(principal, collection, fields, upsert=True))
        return json_response({"data": out}, 201)

    async def select_objects(self, request: Request) -> Response:
        """Objects by ``foreign_ids=collection:id,…``."""
        principal = caller(request)
        refs = []
        for ref in (request.query_params.get("foreign_ids") or "").split(","):
            collection, _, object_id = ref.partition(":")
            if collection and object_id:
                refs.append((collection, object_id))
        return json_response({"response": {"data": await self.objects.select(principal, refs)}})
