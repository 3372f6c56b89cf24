"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json`` and rendered at ``/docs``.

Request schemas come from the pydantic models, so the description cannot drift from validation.
Features add their paths with ``add_path`` when the app is built.
"""

from __future__ import annotations

import html
from typing import Any

from . import __version__
from .models import ActivityIn

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_FEED = {
    "name": "feed",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_\\-:.@]{1,128}$"},
}
_ID = {"name": "activity_id", "in": "path", "required": True, "schema": {"type": "string"}}


def problem(description: str) -> dict[str, Any]:
    """An error response described as an RFC 9457 problem."""
    return {"description": description, "content": {"application/problem+json": {"schema": _PROBLEM}}}


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    """A JSON request body or response."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": problem("Malformed JSON"),
    "401": problem("No or invalid credentials"),
    "403": problem("Not allowed"),
    "422": problem("Invalid fields (each listed in `errors`)"),
    "503": problem("Redis unavailable (see Retry-After)"),
}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


class OpenApi:
    """Accumulates paths; ``document()`` returns the whole description."""

    def __init__(self) -> None:
        activity_in = ActivityIn.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = activity_in.pop("$defs", {})
        self.schemas: dict[str, Any] = {
            **defs,
            "ActivityIn": activity_in,
            "Activity": {
                "type": "object",
                "description": "A stored activity (SPEC §2): the input plus server-owned fields.",
                "properties": {
                    "id": {"type": "string"},
                    "feed": {"type": "string"},
                    "seq": {"type": "integer"},
                    "version": {"type": "integer"},
                    "created_at": {"type": "string"},
                    "updated_at": {"type": "string"},
                    "time": {"type": "string"},
                },
                "additionalProperties": True,
            },
            "Problem": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object"}},
                },
            },
        }
        self.paths: dict[str, dict[str, Any]] = {}
        self._native()
        self._changes()
        self._notifications()

    def add_path(self, path: str, method: str, operation: dict[str, Any]) -> None:
        """Describe one operation."""
        self.paths.setdefault(path, {})[method.lower()] = operation

    def _native(self) -> None:
        activities = {
            "type": "object",
            "properties": {"activities": {"type": "array", "items": {"$ref": "#/components/schemas/Activity"}}},
        }
        self.add_path(
            "/v1/feeds/{feed}/activities",
            "post",
            {
                "summary": "Add one activity, or a batch of up to 100",
                "parameters": [_FEED],
                "requestBody": json_body(
                    {
                        "oneOf": [
                            {"$ref": "#/components/schemas/ActivityIn"},
                            {
                                "type": "object",
                                "properties": {
                                    "activities": {
                                        "type": "array",
                                        "maxItems": 100,
                                        "items": {"$ref": "#/components/schemas/ActivityIn"},
                                    }
                                },
                            },
                        ]
                    }
                ),
                "responses": {
                    "201": json_body(activities, "Stored activities"),
                    **_ERRORS,
                    "409": problem("Conflicting id and foreign_id/time"),
                    "413": problem("Activity or batch too large"),
                },
            },
        )
        self.add_path(
            "/v1/feeds/{feed}/activities",
            "get",
            {
                "summary": "History page, newest first, filtered by what the caller may see",
                "parameters": [
                    _FEED,
                    _query("limit", "Page size (default 25, at most 100)", {"type": "integer"}),
                    _query("id_lt", "Older than this activity id"),
                    _query("id_lte", "This id and older"),
                    _query("id_gt", "Newer than this id (the nearest ones)"),
                    _query("id_gte", "This id and newer"),
                    _query("offset", "Skip this many matching activities", {"type": "integer"}),
                    _query("verb", "Only this verb"),
                    _query("actor", "Only this actor id"),
                ],
                "responses": {
                    "200": json_body(
                        {
                            "type": "object",
                            "properties": {
                                "results": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Activity"},
                                },
                                "next": {"type": ["string", "null"]},
                            },
                        },
                        "A page",
                    ),
                    **_ERRORS,
                },
            },
        )
        self.add_path(
            "/v1/feeds/{feed}/activities/{activity_id}",
            "get",
            {
                "summary": "One activity (404 when missing or hidden from the caller)",
                "parameters": [_FEED, _ID],
                "responses": {
                    "200": json_body({"$ref": "#/components/schemas/Activity"}),
                    "404": problem("Unknown or hidden"),
                    **_ERRORS,
                },
            },
        )
        for path, summary in (
            ("/healthz", "The process is up"),
            ("/readyz", "Redis and the pub/sub path answer (503 otherwise)"),
            ("/metrics", "Prometheus metrics"),
        ):
            self.add_path(path, "get", {"summary": summary, "responses": {"200": {"description": "OK"}}})

    def _changes(self) -> None:
        if_match = {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "description": 'Expected version, e.g. "3"',
            "schema": {"type": "string"},
        }
        one = {
            "200": json_body({"$ref": "#/components/schemas/Activity"}, "The stored activity (ETag: its version)"),
            "404": problem("Unknown or hidden"),
            "409": problem("foreign_id/time taken by another activity"),
            "412": problem("Stale version (`version` holds the current one)"),
            **_ERRORS,
        }
        item = "/v1/feeds/{feed}/activities/{activity_id}"
        self.add_path(
            item,
            "put",
            {
                "summary": "Replace an activity (actor, time and audience default to the stored ones)",
                "parameters": [_FEED, _ID, if_match],
                "requestBody": json_body({"$ref": "#/components/schemas/ActivityIn"}),
                "responses": one,
            },
        )
        self.add_path(
            item,
            "patch",
            {
                "summary": "Partial update: set/unset dotted paths (at most 25 each)",
                "parameters": [_FEED, _ID, if_match],
                "requestBody": json_body(
                    {
                        "type": "object",
                        "properties": {
                            "set": {"type": "object"},
                            "unset": {"type": "array", "items": {"type": "string"}},
                            "version": {"type": "integer"},
                        },
                    }
                ),
                "responses": one,
            },
        )
        self.add_path(
            item,
            "delete",
            {
                "summary": "Remove an activity",
                "parameters": [_FEED, _ID, if_match],
                "responses": {"204": {"description": "Removed"}, "404": problem("Unknown or hidden"), **_ERRORS},
            },
        )
        self.add_path(
            "/v1/feeds/{feed}/activities",
            "delete",
            {
                "summary": "Remove every activity with a foreign_id",
                "parameters": [_FEED, {**_query("foreign_id", "The foreign_id"), "required": True}],
                "responses": {
                    "200": json_body({"type": "object", "properties": {"removed": {"type": "integer"}}}),
                    **_ERRORS,
                },
            },
        )
        outcomes = json_body(
            {
                "type": "object",
                "properties": {
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "index": {"type": "integer"},
                                "status": {"type": "integer"},
                                "activity": {"$ref": "#/components/schemas/Activity"},
                                "error": _PROBLEM,
                            },
                        },
                    },
                    "succeeded": {"type": "integer"},
                    "failed": {"type": "integer"},
                },
            },
            "One result per item",
        )
        self.add_path(
            "/v1/activities/update",
            "post",
            {
                "summary": "Batch full update by feed + foreign_id + time (at most 100)",
                "requestBody": json_body({"type": "object", "properties": {"activities": {"type": "array"}}}),
                "responses": {"200": outcomes, **_ERRORS},
            },
        )
        self.add_path(
            "/v1/activities/partial-update",
            "post",
            {
                "summary": "Batch partial update by feed + id, or feed + foreign_id + time (at most 100)",
                "requestBody": json_body({"type": "object", "properties": {"changes": {"type": "array"}}}),
                "responses": {"200": outcomes, **_ERRORS},
            },
        )

    def _notifications(self) -> None:
        self.add_path(
            "/v1/notifications",
            "get",
            {
                "summary": "The caller's notification feed (is_seen/is_read per activity) with unseen/unread counts",
                "parameters": [
                    _query("limit", "Page size", {"type": "integer"}),
                    _query("id_lt", "Older than this id"),
                ],
                "responses": {
                    "200": json_body(
                        {
                            "type": "object",
                            "properties": {
                                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Activity"}},
                                "next": {"type": ["string", "null"]},
                                "unseen": {"type": "integer"},
                                "unread": {"type": "integer"},
                            },
                        }
                    ),
                    **_ERRORS,
                },
            },
        )
        marks = json_body(
            {
                "type": "object",
                "properties": {
                    "ids": {"type": "array", "items": {"type": "string"}, "maxItems": 1000},
                    "all": {"type": "boolean"},
                },
            }
        )
        counts = json_body(
            {"type": "object", "properties": {"unseen": {"type": "integer"}, "unread": {"type": "integer"}}},
            "New counts",
        )
        for mark in ("seen", "read"):
            self.add_path(
                f"/v1/notifications/{mark}",
                "post",
                {
                    "summary": f"Mark notifications {mark} (ids, or all); new counts are pushed live",
                    "requestBody": marks,
                    "responses": {"200": counts, **_ERRORS},
                },
            )

    def document(self) -> dict[str, Any]:
        """The OpenAPI document."""
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "Activity feed server",
                "version": __version__,
                "description": "Activities stored in Redis and pushed live over WebSocket (`GET /v1/ws`, "
                "see the WebSocket protocol in the README). Authenticate with "
                "`Authorization: Bearer <JWT>` or `X-API-Key`.",
            },
            "paths": self.paths,
            "components": {
                "schemas": self.schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                },
            },
            "security": [{"bearer": []}, {"apiKey": []}, {}],
        }

    def html(self) -> str:
        """A self-contained reference page (works offline; no CDN)."""
        rows = []
        for path, ops in self.paths.items():
            for method, op in ops.items():
                params = ", ".join(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
                codes = " ".join(sorted(op.get("responses", {})))
                rows.append(
                    f"<tr><td class=m>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                    f"<td>{html.escape(op.get('summary', ''))}"
                    + (f"<br><small>query: {html.escape(params)}</small>" if params else "")
                    + f"</td><td><small>{codes}</small></td></tr>"
                )
        return (
            "<!doctype html><html><head><meta charset=utf-8><title>Activity feed server API</title>"
            "<style>body{font:15px system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#222}"
            "table{border-collapse:collapse;width:100%}td{border-bottom:1px solid #ddd;padding:.4rem;"
            "vertical-align:top}.m{font-weight:700;color:#06c}code{font-size:14px}</style></head><body>"
            f"<h1>Activity feed server <small>{__version__}</small></h1>"
            "<p>Machine-readable description: <a href='/openapi.json'>/openapi.json</a>. "
            "Live events: WebSocket <code>/v1/ws</code>.</p>"
            "<table><tr><th>method</th><th>path</th><th>does</th><th>statuses</th></tr>"
            + "".join(rows)
            + "</table></body></html>"
        )
