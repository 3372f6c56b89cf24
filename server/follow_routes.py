"""Native HTTP endpoints of follows (SPEC §12), mounted by ``app.py``.

| method and path | does |
|---|---|
| ``POST /v1/feeds/{feed}/follows`` ``{"target", "activity_copy_limit"?}`` | ``feed`` follows ``target`` → 201 |
| ``DELETE /v1/feeds/{feed}/follows/{target}?keep_history=true`` | unfollow → 204 |
| ``GET /v1/feeds/{feed}/followers?limit&offset&filter=a,b`` | who follows ``feed`` |
| ``GET /v1/feeds/{feed}/following?limit&offset&filter=a,b`` | what ``feed`` follows |
| ``GET /v1/feeds/{feed}/follow_stats?followers_slugs=a,b&following_slugs=c`` | counts |
| ``POST /v1/follows`` ``{"follows": [{"source", "target"}], "activity_copy_limit"?}`` | follow_many |
| ``POST /v1/unfollows`` ``{"follows": [{"source", "target", "keep_history"?}]}`` | unfollow_many |
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .errors import Invalid
from .follow_service import FollowService
from .http import caller, json_response, read_json

#: Largest follower/following page.
MAX_LIST = 500


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high] (422 otherwise)."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Invalid(
            f"{name} must be an integer {low}..{high}",
            errors=[{"loc": f"query.{name}", "msg": f"{low}..{high}", "type": "range"}],
        )
    return value


def query_list(request: Request, name: str) -> list[str]:
    """A comma-separated query parameter as a list (empty when absent)."""
    return [p for p in (request.query_params.get(name) or "").split(",") if p]


def query_bool(request: Request, name: str) -> bool:
    """``true``/``1`` → True."""
    return (request.query_params.get(name) or "").lower() in ("1", "true", "yes")


class FollowApi:
    """Handlers of the follow endpoints, bound to one ``FollowService``."""

    def __init__(self, follows: FollowService, *, max_body_bytes: int) -> None:
        self.follows = follows
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[Route]:
        """Starlette routes."""
        return [
            Route("/v1/feeds/{feed}/follows", self.follow, methods=["POST"]),
            Route("/v1/feeds/{feed}/follows/{target}", self.unfollow, methods=["DELETE"]),
            Route("/v1/feeds/{feed}/followers", self.followers, methods=["GET"]),
            Route("/v1/feeds/{feed}/following", self.following, methods=["GET"]),
            Route("/v1/feeds/{feed}/follow_stats", self.stats, methods=["GET"]),
            Route("/v1/follows", self.follow_many, methods=["POST"]),
            Route("/v1/unfollows", self.unfollow_many, methods=["POST"]),
        ]

    async def follow(self, request: Request) -> Response:
        """``feed`` follows ``target`` (its newest ``activity_copy_limit`` activities are copied)."""
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        target = body.get("target") if isinstance(body, dict) else None
        if not isinstance(target, str):
            raise Invalid("target is required", errors=[{"loc": "target", "msg": "a feed name", "type": "missing"}])
        limit = body.get("activity_copy_limit")
        row = await self.follows.follow(principal, request.path_params["feed"], target, copy_limit=limit)
        return json_response({"follow": row.as_json()}, 201)

    async def unfollow(self, request: Request) -> Response:
        """Stop following; copies are removed unless ``keep_history=true``."""
        principal = caller(request)
        await self.follows.unfollow(
            principal,
            request.path_params["feed"],
            request.path_params["target"],
            keep_history=query_bool(request, "keep_history"),
        )
        return Response(status_code=204)

    async def followers(self, request: Request) -> Response:
        """Feeds following this one, newest first."""
        return await self._listing(request, "followers")

    async def following(self, request: Request) -> Response:
        """Feeds this one follows, newest first."""
        return await self._listing(request, "following")

    async def _listing(self, request: Request, side: str) -> Response:
        principal = caller(request)
        rows = await self.follows.listing(
            principal,
            request.path_params["feed"],
            side=side,
            offset=query_int(request, "offset", 0, 0, 1_000_000),
            limit=query_int(request, "limit", 25, 1, MAX_LIST),
            only=query_list(request, "filter"),
        )
        return json_response({"results": [r.as_json() for r in rows]})

    async def stats(self, request: Request) -> Response:
        """Follower and following counts."""
        principal = caller(request)
        results = await self.follows.stats(
            principal,
            request.path_params["feed"],
            followers_slugs=query_list(request, "followers_slugs"),
            following_slugs=query_list(request, "following_slugs"),
        )
        return json_response({"results": results})

    async def follow_many(self, request: Request) -> Response:
        """Many follows at once."""
        principal = caller(request)
        body: Any = await read_json(request, self.max_body_bytes)
        pairs = body.get("follows") if isinstance(body, dict) else body
        limit = body.get("activity_copy_limit") if isinstance(body, dict) else None
        rows = await self.follows.follow_many(principal, pairs, copy_limit=limit)
        return json_response({"follows": [r.as_json() for r in rows]}, 201)

    async def unfollow_many(self, request: Request) -> Response:
        """Many unfollows at once."""
        principal = caller(request)
        body: Any = await read_json(request, self.max_body_bytes)
        pairs = body.get("follows") if isinstance(body, dict) else body
        removed = await self.follows.unfollow_many(principal, pairs)
        return json_response({"removed": removed})
