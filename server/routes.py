"""The native HTTP API (SPEC §4): activities, health, metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import __version__
from .api_models import Index
from .errors import BadRequest, Invalid, Unavailable
from .http import JSONBytes, caller, json_response, read_json
from .metrics import CONTENT_TYPE, Metrics
from .models import dumps
from .service import FeedService, ItemOutcome, PageQuery


def activities_json(bodies: list[bytes]) -> bytes:
    """``{"activities": [...]}`` around stored bodies, without re-encoding them."""
    return b'{"activities":[' + b",".join(bodies) + b"]}"


def _int_param(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(
            f"{name} must be an integer",
            errors=[{"loc": f"query.{name}", "msg": "not an integer", "type": "int_parsing"}],
        ) from None
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise Invalid(
            f"{name} must be {bound}",
            errors=[{"loc": f"query.{name}", "msg": f"must be {bound}", "type": "range"}],
        )
    return value


def _if_match(request: Request) -> int | None:
    """The version of an ``If-Match: "3"`` header (``W/"3"``, ``3`` and ``*`` accepted)."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise BadRequest('If-Match must be a quoted version number, e.g. If-Match: "3"')
    return int(value)


def _with_etag(body: bytes) -> Response:
    """An activity response carrying its version as a strong ETag (for If-Match)."""
    version = orjson.loads(body).get("version")
    return JSONBytes(body, headers={"ETag": f'"{version}"'} if version is not None else None)


def _outcomes_json(outcomes: list[ItemOutcome]) -> bytes:
    """``{"results": [...], "succeeded": n, "failed": m}`` with stored bodies spliced in."""
    parts = []
    for o in outcomes:
        head = dumps({"index": o.index, "status": o.status})[:-1]
        if o.body is not None:
            parts.append(head + b',"activity":' + o.body + b"}")
        else:
            assert o.error is not None
            parts.append(head + b',"error":' + dumps(o.error.problem()) + b"}")
    ok = sum(o.body is not None for o in outcomes)
    tail = dumps({"succeeded": ok, "failed": len(outcomes) - ok})[1:]
    return b'{"results":[' + b",".join(parts) + b"]," + tail


class NativeApi:
    """Handlers of the native API, bound to one service."""

    def __init__(
        self,
        service: FeedService,
        metrics: Metrics,
        *,
        max_body_bytes: int,
        readiness: Callable[[], Any],
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._readiness = readiness
        #: Reads' post-processing (reactions, references, discarded actors; ``model_routes.Enricher``).
        self.enrich: Callable[[Any, list[bytes], Any], Awaitable[list[bytes]]] | None = None

    def routes(self) -> list[Route]:
        """Starlette routes of the native API."""
        return [
            Route("/v1/feeds/{feed}/activities", self.post_activities, methods=["POST"]),
            Route("/v1/feeds/{feed}/activities", self.list_activities, methods=["GET"]),
            Route("/v1/feeds/{feed}/activities", self.delete_by_foreign_id, methods=["DELETE"]),
            Route("/v1/feeds/{feed}/activities/{activity_id}", self.get_activity, methods=["GET"]),
            Route("/v1/feeds/{feed}/activities/{activity_id}", self.put_activity, methods=["PUT"]),
            Route("/v1/feeds/{feed}/activities/{activity_id}", self.patch_activity, methods=["PATCH"]),
            Route("/v1/feeds/{feed}/activities/{activity_id}", self.delete_activity, methods=["DELETE"]),
            Route("/v1/activities/update", self.batch_update, methods=["POST"]),
            Route("/v1/activities/partial-update", self.batch_partial_update, methods=["POST"]),
            Route("/v1/notifications", self.notifications, methods=["GET"]),
            Route("/v1/notifications/seen", self.mark_seen, methods=["POST"]),
            Route("/v1/notifications/read", self.mark_read, methods=["POST"]),
            Route("/", self.index, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]

    async def post_activities(self, request: Request) -> Response:
        """Add one activity (an object) or many (``{"activities": [...]}``) → 201."""
        principal = caller(request)
        body = await read_json(request, self.max_body_bytes)
        feed = request.path_params["feed"]
        if isinstance(body, dict) and "activities" in body and "verb" not in body:
            items = body["activities"]
            if not isinstance(items, list):
                raise Invalid(
                    "activities must be a list",
                    errors=[{"loc": "activities", "msg": "must be a list", "type": "list_type"}],
                )
            bodies = await self.service.post(principal, feed, items, batch=True)
        else:
            bodies = await self.service.post(principal, feed, [body], batch=False)
        return JSONBytes(activities_json(bodies), status_code=201)

    def _page_query(self, request: Request) -> PageQuery:
        q = request.query_params
        return PageQuery(
            limit=_int_param(request, "limit", 25, 1, self.service.max_page),
            id_lt=q.get("id_lt") or None,
            id_lte=q.get("id_lte") or None,
            id_gt=q.get("id_gt") or None,
            id_gte=q.get("id_gte") or None,
            offset=_int_param(request, "offset", 0, 0, 10_000),
            verb=q.get("verb") or None,
            actor=q.get("actor") or None,
        )

    async def list_activities(self, request: Request) -> Response:
        """A history page, newest first, with the URL of the next page."""
        principal = caller(request)
        page = await self.service.read(principal, request.path_params["feed"], self._page_query(request))
        next_url = f"{request.url.path}?{urlencode(page.next)}" if page.next else None
        bodies = page.bodies if self.enrich is None else await self.enrich(principal, page.bodies, request.query_params)
        tail = dumps({"next": next_url, "hidden": page.hidden})[1:]
        return JSONBytes(b'{"results":[' + b",".join(bodies) + b"]," + tail)

    async def get_activity(self, request: Request) -> Response:
        """One activity (404 when missing or hidden), with its version as ``ETag``."""
        principal = caller(request)
        body = await self.service.get(principal, request.path_params["feed"], request.path_params["activity_id"])
        return _with_etag(body)

    async def put_activity(self, request: Request) -> Response:
        """Replace an activity; ``If-Match: "<version>"`` (or a body ``version``) guards against lost updates."""
        principal = caller(request)
        raw = await read_json(request, self.max_body_bytes)
        p = request.path_params
        body = await self.service.replace(principal, p["feed"], p["activity_id"], raw, if_match=_if_match(request))
        return _with_etag(body)

    async def patch_activity(self, request: Request) -> Response:
        """``{"set": {...}, "unset": [...]}`` on an activity."""
        principal = caller(request)
        raw = await read_json(request, self.max_body_bytes)
        p = request.path_params
        body = await self.service.patch(principal, p["feed"], p["activity_id"], raw, if_match=_if_match(request))
        return _with_etag(body)

    async def delete_activity(self, request: Request) -> Response:
        """Remove an activity → 204."""
        principal = caller(request)
        p = request.path_params
        await self.service.delete(principal, p["feed"], p["activity_id"], if_match=_if_match(request))
        return Response(status_code=204)

    async def delete_by_foreign_id(self, request: Request) -> Response:
        """``DELETE …/activities?foreign_id=X``: remove every activity with that foreign_id."""
        principal = caller(request)
        foreign_id = request.query_params.get("foreign_id")
        if not foreign_id:
            raise Invalid(
                "foreign_id is required", errors=[{"loc": "query.foreign_id", "msg": "required", "type": "missing"}]
            )
        feed = request.path_params["feed"]
        removed = await self.service.delete_foreign_id(principal, feed, foreign_id)
        return json_response({"removed": removed})

    async def batch_update(self, request: Request) -> Response:
        """Full updates by ``feed`` + ``foreign_id`` + ``time``; a result per item."""
        principal = caller(request)
        raw = await read_json(request, self.max_body_bytes)
        items = raw.get("activities") if isinstance(raw, dict) else raw
        return JSONBytes(_outcomes_json(await self.service.batch_update(principal, items)))

    async def batch_partial_update(self, request: Request) -> Response:
        """Partial updates by ``feed`` + ``id`` or ``feed`` + ``foreign_id`` + ``time``; a result per item."""
        principal = caller(request)
        raw = await read_json(request, self.max_body_bytes)
        items = (raw.get("changes") or raw.get("activities")) if isinstance(raw, dict) else raw
        return JSONBytes(_outcomes_json(await self.service.batch_partial_update(principal, items)))

    async def notifications(self, request: Request) -> Response:
        """The caller's notification feed (paginated like any feed) with ``unseen`` and ``unread``."""
        principal = caller(request)
        page = await self.service.notifications(principal, self._page_query(request))
        next_url = f"{request.url.path}?{urlencode(page.next)}" if page.next else None
        tail = dumps({"next": next_url, "unseen": page.unseen, "unread": page.unread})[1:]
        return JSONBytes(b'{"results":[' + b",".join(page.bodies) + b"]," + tail)

    async def mark_seen(self, request: Request) -> Response:
        """Mark ``{"ids": [...]}`` or ``{"all": true}`` seen → the new counts (pushed live too)."""
        return await self._mark(request, "seen")

    async def mark_read(self, request: Request) -> Response:
        """Mark ``{"ids": [...]}`` or ``{"all": true}`` read (and seen) → the new counts."""
        return await self._mark(request, "read")

    async def _mark(self, request: Request, kind: str) -> Response:
        principal = caller(request)
        raw = await read_json(request, self.max_body_bytes)
        unseen, unread = await self.service.mark_notifications(principal, kind, raw)
        return json_response({"unseen": unseen, "unread": unread})

    async def index(self, request: Request) -> Response:
        """``GET /``: links to the docs, the descriptions and the dashboard (a page for browsers)."""
        demo = any(getattr(r, "name", None) == "demo" for r in request.app.routes)
        links = Index(
            name="feedserver",
            version=__version__,
            docs="/docs",
            openapi="/openapi.json",
            asyncapi="/asyncapi.json",
            websocket="/v1/ws",
            demo="/demo/" if demo else None,
        )
        if "text/html" not in request.headers.get("accept", ""):
            return json_response(links.model_dump())
        items = [
            ("/docs", "API docs: try the HTTP API with a token"),
            ("/docs/static/asyncapi.html", "WebSocket protocol"),
            *([("/demo/", "Live dashboard")] if demo else []),
            ("/openapi.json", "OpenAPI 3.1 description"),
            ("/asyncapi.json", "AsyncAPI 3.0 description"),
        ]
        rows = "".join(f'<li><a href="{href}">{text}</a> <code>{href}</code></li>' for href, text in items)
        page = (
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>feedserver</title>"
            "<style>body{font:16px system-ui,sans-serif;margin:3rem auto;max-width:40rem;color:#1f2933}"
            "li{margin:.5rem 0}code{color:#52606d;font-size:.85em}</style></head><body>"
            f"<h1>feedserver <small>{__version__}</small></h1><ul>{rows}</ul>"
            "<p>Mint a token with <code>feedserver token --help</code>.</p></body></html>"
        )
        return Response(page, media_type="text/html")

    async def healthz(self, request: Request) -> Response:
        """The process is up (no Redis call)."""
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Redis answers and a message published on pub/sub comes back; 503 otherwise."""
        try:
            details = await self._readiness()
        except Unavailable as exc:
            return json_response({"status": "unavailable", "detail": exc.detail}, 503, {"Retry-After": "1"})
        return json_response({"status": "ready", **details})

    async def metrics_endpoint(self, request: Request) -> Response:
        """Prometheus text format."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)


class Readiness:
    """``/readyz``: the store answers, and the broker's pub/sub round trip works.

    ``ping`` is the store's (on a cluster: every master answers PING on the write path);
    ``round_trip`` is the broker's ``check_ready`` (on a cluster: per master, a ``SPUBLISH`` on a
    probe channel in a slot that master owns comes back through this process, and the node says
    it is a master — never ready from a replica). Each raises ``errors.Unavailable`` with a reason.
    """

    def __init__(self, ping: Callable[[], Any], round_trip: Callable[[], Any]) -> None:
        self._ping = ping
        self._round_trip = round_trip
        self.draining = False

    async def __call__(self) -> dict[str, Any]:
        if self.draining:
            raise Unavailable("shutting down")
        started = time.perf_counter()
        if await self._ping() is False:
            raise Unavailable("Redis does not answer PING", retry_after=1.0)
        await self._round_trip()
        return {"redis_ms": round((time.perf_counter() - started) * 1000, 2)}
