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

from .acl import Principal, actor_id
from .aggregation import AggregationService
from .auth import Authenticator
from .errors import Invalid
from .follow_routes import query_bool, query_int
from .http import json_response, principal_of, read_json
from .models import dumps
from .objects import ObjectService
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


def _user_ref_in(actor: Any, discard: set[str]) -> bool:
    """``SU:alice`` is discarded by ``alice`` too."""
    ident = actor.get("id") if isinstance(actor, dict) else actor
    return isinstance(ident, str) and ident.startswith("SU:") and ident[3:] in discard


def describe(openapi: Any, routes: list[Route], tag: str) -> None:
    """Add each route to the OpenAPI document: its handler's docstring, path parameters, and the
    problem responses every endpoint may give (the request/response models are in docs/api.md)."""
    for route in routes:
        doc = (route.endpoint.__doc__ or route.path).strip().splitlines()[0]
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.param_convertors
        ]
        for method in route.methods or ():
            if method == "HEAD":
                continue
            words = [p.strip("{}") for p in route.path.split("/") if p and p != "v1"]
            openapi.add_path(
                route.path,
                method,
                {
                    "tags": [tag],
                    "summary": doc,
                    "operationId": "_".join([method.lower(), *words]),
                    "parameters": params,
                    "responses": {
                        "200": {
                            "description": "OK; shapes in docs/api.md",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "201": {
                            "description": "Created; shapes in docs/api.md",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "204": {"description": "Deleted (no content)"},
                        "default": {
                            "description": "RFC 9457 problem",
                            "content": {"application/problem+json": {"schema": {"type": "object"}}},
                        },
                    },
                },
            )


class ModelApi:
    """Handlers of the reaction, user and collection endpoints."""

    def __init__(
        self,
        reactions: ReactionService,
        objects: ObjectService,
        aggregation: AggregationService,
        auth: Authenticator,
        *,
        max_body_bytes: int,
    ) -> None:
        self.reactions = reactions
        self.objects = objects
        self.aggregation = aggregation
        self.enricher = Enricher(reactions, objects)
        self.auth = auth
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
        principal = await principal_of(request, self.auth)
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
        principal = await principal_of(request, self.auth)
        body = await read_json(request, self.max_body_bytes)
        unseen, unread = await self.aggregation.mark(principal, request.path_params["feed"], mode, body)
        return json_response({"unseen": unseen, "unread": unread})

    # -- reactions -----------------------------------------------------------------------------

    async def add_reaction(self, request: Request) -> Response:
        """Add a reaction (to an activity, or a child reaction with ``parent``)."""
        principal = await principal_of(request, self.auth)
        body = await read_json(request, self.max_body_bytes)
        return json_response(await self.reactions.add(principal, body), 201)

    async def get_reaction(self, request: Request) -> Response:
        """One reaction."""
        principal = await principal_of(request, self.auth)
        flags = EnrichFlags(own_children=_flag(request.query_params, "with_own_children"))
        return json_response(await self.reactions.get(principal, request.path_params["id"], flags))

    async def update_reaction(self, request: Request) -> Response:
        """Replace a reaction's data."""
        principal = await principal_of(request, self.auth)
        body = await read_json(request, self.max_body_bytes)
        return json_response(await self.reactions.update(principal, request.path_params["id"], body))

    async def delete_reaction(self, request: Request) -> Response:
        """Delete a reaction."""
        principal = await principal_of(request, self.auth)
        await self.reactions.delete(principal, request.path_params["id"])
        return Response(status_code=204)

    async def list_reactions(self, request: Request) -> Response:
        """Reactions of an activity, of a reaction (children) or of a user, newest first."""
        principal = await principal_of(request, self.auth)
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
        principal = await principal_of(request, self.auth)
        body = await read_json(request, self.max_body_bytes)
        user, created = await self.objects.add_user(principal, body, get_or_create=query_bool(request, "get_or_create"))
        return json_response(user, 201 if created else 200)

    async def get_user(self, request: Request) -> Response:
        """One user."""
        principal = await principal_of(request, self.auth)
        return json_response(await self.objects.get_user(principal, request.path_params["id"]))

    async def update_user(self, request: Request) -> Response:
        """Replace a user's data."""
        principal = await principal_of(request, self.auth)
        body = await read_json(request, self.max_body_bytes)
        return json_response(await self.objects.update_user(principal, request.path_params["id"], body))

    async def delete_user(self, request: Request) -> Response:
        """Delete a user."""
        principal = await principal_of(request, self.auth)
        await self.objects.delete_user(principal, request.path_params["id"])
        return Response(status_code=204)

    # -- collections ---------------------------------------------------------------------------

    async def add_object(self, request: Request) -> Response:
        """Create a collection object."""
        principal = await principal_of(request, self.auth)
        body = await read_json(request, self.max_body_bytes)
        return json_response(await self.objects.add_object(principal, request.path_params["collection"], body), 201)

    async def get_object(self, request: Request) -> Response:
        """One collection object."""
        principal = await principal_of(request, self.auth)
        p = request.path_params
        return json_response(await self.objects.get_object(principal, p["collection"], p["id"]))

    async def update_object(self, request: Request) -> Response:
        """Replace a collection object's data."""
        principal = await principal_of(request, self.auth)
        body = await read_json(request, self.max_body_bytes)
        p = request.path_params
        return json_response(await self.objects.update_object(principal, p["collection"], p["id"], body))

    async def delete_object(self, request: Request) -> Response:
        """Delete a collection object."""
        principal = await principal_of(request, self.auth)
        p = request.path_params
        await self.objects.delete_object(principal, p["collection"], p["id"])
        return Response(status_code=204)

    async def upsert_objects(self, request: Request) -> Response:
        """Create or replace many objects: ``{"data": {collection: [{id, data…}]}}``."""
        principal = await principal_of(request, self.auth)
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
            for item in items:
                fields = {"id": item.get("id"), "user_id": item.get("user_id"), "data": item.get("data")}
                if fields["data"] is None and isinstance(item, dict):  # GetStream: the rest of the item is data
                    fields["data"] = {k: v for k, v in item.items() if k not in ("id", "user_id")}
                out[collection].append(await self.objects.add_object(principal, collection, fields, upsert=True))
        return json_response({"data": out}, 201)

    async def select_objects(self, request: Request) -> Response:
        """Objects by ``foreign_ids=collection:id,…``."""
        principal = await principal_of(request, self.auth)
        refs = []
        for ref in (request.query_params.get("foreign_ids") or "").split(","):
            collection, _, object_id = ref.partition(":")
            if collection and object_id:
                refs.append((collection, object_id))
        return json_response({"response": {"data": await self.objects.select(principal, refs)}})
