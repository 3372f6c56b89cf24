"""The GetStream flat-feed routes in ``/openapi.json`` (``OpenApi.operation`` with ``schemas``' models).

Errors are GetStream's document (``GsError``), not RFC 9457 problems: the official clients read
``code``/``exception``. Credentials: ``api_key`` in the query and the raw JWT (no ``Bearer``) in
``Authorization``. The GetStream model routes (follows, reactions, users, collections) are not
described here yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...openapi import Reply
from .api import PREFIX
from .schemas import (
    GsActivitiesIn,
    GsActivitiesQuery,
    GsActivityIn,
    GsAdded,
    GsAddedMany,
    GsAddToMany,
    GsAuthQuery,
    GsChanges,
    GsDone,
    GsError,
    GsFeedPath,
    GsReadQuery,
    GsRemoved,
    GsRemovePath,
    GsRemoveQuery,
    GsResults,
    GsRetargeted,
    GsTargets,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ...openapi import OpenApi

TAGS = ["dialect: GetStream"]
SECURITY: list[dict[str, list[str]]] = [{"getstreamApiKey": [], "getstreamToken": []}]
ERRORS = {
    400: Reply(GsError, "InputException (code 4) and other client errors"),
    401: Reply(GsError, "NotAllowedException: missing or bad signature / api_key"),
    403: Reply(GsError, "NotAllowedException: the token's scopes do not cover this"),
    404: Reply(GsError, "DoesNotExistException (code 6)"),
    413: Reply(GsError, "The body is too large"),
    429: Reply(GsError, "RateLimitReached (code 9)"),
    503: Reply(GsError, "Redis is unavailable (see Retry-After)"),
}


def describe(openapi: OpenApi) -> None:
    """Add the GetStream ``/api/v1.0/`` flat-feed paths to ``openapi``."""
    openapi.security_scheme(
        "getstreamApiKey",
        {"type": "apiKey", "in": "query", "name": "api_key", "description": "GetStream app key"},
    )
    openapi.security_scheme(
        "getstreamToken",
        {"type": "apiKey", "in": "header", "name": "Authorization", "description": "GetStream JWT (no Bearer)"},
    )
    ops: list[tuple[str, str, str, dict[str, Any]]] = [
        (
            "/feed/add_to_many/",
            "post",
            "GetStream: add one activity to many feeds",
            {"query": GsAuthQuery, "body": GsAddToMany, "responses": {201: Reply(GsDone, "Added")}},
        ),
        (
            "/feed/{slug}/{user_id}/",
            "post",
            "GetStream: add an activity (or {activities: [...]})",
            {
                "path_params": GsFeedPath,
                "query": GsAuthQuery,
                "body": GsActivityIn | GsActivitiesIn,
                "responses": {201: Reply(GsAdded | GsAddedMany, "The stored activity or activities")},
            },
        ),
        (
            "/feed/{slug}/{user_id}/",
            "get",
            "GetStream: read a feed (newest first)",
            {"path_params": GsFeedPath, "query": GsReadQuery, "responses": {200: Reply(GsResults, "A page")}},
        ),
        (
            "/enrich/feed/{slug}/{user_id}/",
            "get",
            "GetStream: read a feed, enriched",
            {"path_params": GsFeedPath, "query": GsReadQuery, "responses": {200: Reply(GsResults, "A page")}},
        ),
        (
            "/feed/{slug}/{user_id}/{activity_id}/",
            "delete",
            "GetStream: remove an activity (by id or foreign id)",
            {"path_params": GsRemovePath, "query": GsRemoveQuery, "responses": {200: Reply(GsRemoved, "Removed")}},
        ),
        (
            "/activities/",
            "get",
            "GetStream: activities by ids or (foreign_id, time)",
            {"query": GsActivitiesQuery, "responses": {200: Reply(GsResults, "The activities found")}},
        ),
        (
            "/enrich/activities/",
            "get",
            "GetStream: activities by ids or (foreign_id, time), enriched",
            {"query": GsActivitiesQuery, "responses": {200: Reply(GsResults, "The activities found")}},
        ),
        (
            "/activities/",
            "post",
            "GetStream: update activities (by foreign_id and time)",
            {"query": GsAuthQuery, "body": GsActivitiesIn, "responses": {201: Reply(GsDone, "Updated")}},
        ),
        (
            "/activity/",
            "post",
            "GetStream: partial updates (set/unset)",
            {"query": GsAuthQuery, "body": GsChanges, "responses": {201: Reply(GsAddedMany, "The updated activities")}},
        ),
        (
            "/feed_targets/{slug}/{user_id}/activity_to_targets/",
            "post",
            "GetStream: change an activity's to targets",
            {
                "path_params": GsFeedPath,
                "query": GsAuthQuery,
                "body": GsTargets,
                "responses": {201: Reply(GsRetargeted, "The activity and the targets changed")},
            },
        ),
    ]
    for path, method, summary, spec in ops:
        openapi.operation(
            PREFIX + path,
            method,
            summary=summary,
            tags=TAGS,
            path_params=spec.get("path_params"),
            query=spec.get("query"),
            body=spec.get("body"),
            responses={**spec["responses"], **ERRORS},
            problems={},
            security=SECURITY,
        )


__all__ = ["describe"]
