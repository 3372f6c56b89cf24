"""The GetStream flat-feed routes in ``/openapi.json`` (``OpenApi.operation`` with ``schemas``' models).

Errors are GetStream's document (``GsError``), not RFC 9457 problems: the official clients read
``code``/``exception``. Credentials: ``api_key`` in the query and the raw JWT (no ``Bearer``) in
``Authorization``. ``model_operations`` adds the SPEC §12 routes of ``model.py`` (follows,
reactions, users, collections; aggregated and notification reads share the feed read), and
``describe_bayeux`` the realtime endpoint ``/faye``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...openapi import Reply
from .api import PREFIX
from .schemas import (
    BayeuxForm,
    BayeuxJsonpQuery,
    BayeuxMessage,
    BayeuxReply,
    GsActivitiesIn,
    GsActivitiesQuery,
    GsActivityIn,
    GsAdded,
    GsAddedMany,
    GsAddToMany,
    GsAuthQuery,
    GsChanges,
    GsCollectionPath,
    GsDataIn,
    GsDeleteObjectsQuery,
    GsDone,
    GsEnrichQuery,
    GsError,
    GsFeedPath,
    GsFollowIn,
    GsFollowListQuery,
    GsFollowManyQuery,
    GsFollowPair,
    GsFollowPath,
    GsFollows,
    GsGroups,
    GsIdPath,
    GsObject,
    GsObjectIn,
    GsObjectPath,
    GsReactionAnswer,
    GsReactionFilterPath,
    GsReactionFilterQuery,
    GsReactionIn,
    GsReactionKindPath,
    GsReactions,
    GsReactionUpdate,
    GsReadQuery,
    GsRemoved,
    GsRemovePath,
    GsRemoveQuery,
    GsResults,
    GsRetargeted,
    GsSelected,
    GsSelectQuery,
    GsStats,
    GsStatsQuery,
    GsTargets,
    GsUnfollowPair,
    GsUnfollowQuery,
    GsUpserted,
    GsUpsertIn,
    GsUser,
    GsUserIn,
    GsUserQuery,
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


def describe(openapi: OpenApi, *, model: bool = False) -> None:
    """Add the GetStream ``/api/v1.0/`` paths to ``openapi`` (with ``model``: the SPEC §12 ones too)
    and ``/faye``."""
    openapi.security_scheme(
        "getstreamApiKey",
        {"type": "apiKey", "in": "query", "name": "api_key", "description": "GetStream app key"},
    )
    openapi.security_scheme(
        "getstreamToken",
        {"type": "apiKey", "in": "header", "name": "Authorization", "description": "GetStream JWT (no Bearer)"},
    )
    read_query = GsEnrichQuery if model else GsReadQuery
    read_reply = (
        Reply(GsResults | GsGroups, "A page: activities, or groups on an aggregated or notification feed")
        if model
        else Reply(GsResults, "A page")
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
            {"path_params": GsFeedPath, "query": read_query, "responses": {200: read_reply}},
        ),
        (
            "/enrich/feed/{slug}/{user_id}/",
            "get",
            "GetStream: read a feed, enriched",
            {"path_params": GsFeedPath, "query": read_query, "responses": {200: read_reply}},
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
    if model:
        ops += model_operations()
    for path, method, summary, spec in ops:
        openapi.operation(
            PREFIX + path,
            method,
            summary=summary,
            description=spec.get("description", ""),
            tags=TAGS,
            path_params=spec.get("path_params"),
            query=spec.get("query"),
            body=spec.get("body"),
            responses={**spec["responses"], **ERRORS, **spec.get("errors", {})},
            problems={},
            security=SECURITY,
        )
    describe_bayeux(openapi)


CONFLICT = {409: Reply(GsError, "InputException: the id is taken")}
OTHER_SPELLINGS = "The clients' other spellings of this path (no trailing slash{extra}) are served the same."


def model_operations() -> list[tuple[str, str, str, dict[str, Any]]]:
    """The SPEC §12 routes (``model.py``) with their models."""
    f = "/feed/{slug}/{user_id}/"
    done = Reply(GsDone, "Done")
    ops: list[tuple[str, str, str, dict[str, Any]]] = []
    for spelling, client in (("follows/", "the Python client"), ("following/", "the JS client")):
        ops += [
            (
                f + spelling,
                "post",
                f"GetStream: follow a feed ({client}'s path)",
                {
                    "path_params": GsFeedPath,
                    "query": GsAuthQuery,
                    "body": GsFollowIn,
                    "responses": {201: Reply(GsDone, "Following")},
                },
            ),
            (
                f + spelling,
                "get",
                f"GetStream: the feeds this one follows ({client}'s path)",
                {"path_params": GsFeedPath, "query": GsFollowListQuery, "responses": {200: GsFollows}},
            ),
            (
                f + spelling + "{target}/",
                "delete",
                f"GetStream: unfollow ({client}'s path)",
                {"path_params": GsFollowPath, "query": GsUnfollowQuery, "responses": {200: done}},
            ),
        ]
    ops += [
        (
            f + "followers/",
            "get",
            "GetStream: the feeds following this one",
            {"path_params": GsFeedPath, "query": GsFollowListQuery, "responses": {200: GsFollows}},
        ),
        (
            "/follow_many/",
            "post",
            "GetStream: many follows",
            {"query": GsFollowManyQuery, "body": list[GsFollowPair], "responses": {201: done}},
        ),
        (
            "/unfollow_many/",
            "post",
            "GetStream: many unfollows",
            {"query": GsAuthQuery, "body": list[GsUnfollowPair], "responses": {201: done}},
        ),
        (
            "/stats/follow/",
            "get",
            "GetStream: follower and following counts",
            {"query": GsStatsQuery, "responses": {200: GsStats}},
        ),
        (
            "/reaction/",
            "post",
            "GetStream: add a reaction (to an activity, or a child of a reaction)",
            {"query": GsAuthQuery, "body": GsReactionIn, "responses": {201: GsReactionAnswer}, "errors": CONFLICT},
        ),
        (
            "/reaction/{by}/{value}/",
            "get",
            "GetStream: reactions of an activity, a reaction or a user",
            {"path_params": GsReactionFilterPath, "query": GsReactionFilterQuery, "responses": {200: GsReactions}},
        ),
        (
            "/reaction/{by}/{value}/{kind}/",
            "get",
            "GetStream: reactions of one kind",
            {"path_params": GsReactionKindPath, "query": GsReactionFilterQuery, "responses": {200: GsReactions}},
        ),
        (
            "/reaction/{id}/",
            "get",
            "GetStream: one reaction",
            {"path_params": GsIdPath, "query": GsAuthQuery, "responses": {200: GsReactionAnswer}},
        ),
        (
            "/reaction/{id}/",
            "put",
            "GetStream: change a reaction's data",
            {
                "path_params": GsIdPath,
                "query": GsAuthQuery,
                "body": GsReactionUpdate,
                "responses": {201: GsReactionAnswer},
            },
        ),
        (
            "/reaction/{id}/",
            "delete",
            "GetStream: delete a reaction",
            {"path_params": GsIdPath, "query": GsAuthQuery, "responses": {200: done}},
        ),
        (
            "/user/",
            "post",
            "GetStream: add a user",
            {
                "query": GsUserQuery,
                "body": GsUserIn,
                "responses": {201: GsUser, 200: Reply(GsUser, "The existing user (get_or_create)")},
                "errors": {409: Reply(GsError, "InputException: the user exists")},
            },
        ),
    ]
    spec: dict[str, Any]
    for method, summary, spec in (
        ("get", "one user", {"responses": {200: GsUser}}),
        ("put", "change a user's data", {"body": GsDataIn, "responses": {201: GsUser}}),
        ("delete", "delete a user", {"responses": {200: done}}),
    ):
        extra = {"description": OTHER_SPELLINGS.format(extra=", or `user//{id}` as the Python client writes")}
        ops.append(
            (
                "/user/{id}/",
                method,
                f"GetStream: {summary}",
                {"path_params": GsIdPath, "query": GsAuthQuery, **spec, **extra},
            )
        )
    ops += [
        (
            "/collections/",
            "post",
            "GetStream: create or replace objects of collections",
            {"query": GsAuthQuery, "body": GsUpsertIn, "responses": {201: GsUpserted}},
        ),
        (
            "/collections/",
            "get",
            "GetStream: objects by collection:id",
            {"query": GsSelectQuery, "responses": {200: GsSelected}},
        ),
        (
            "/collections/",
            "delete",
            "GetStream: delete objects of a collection (unknown ids are fine)",
            {"query": GsDeleteObjectsQuery, "responses": {200: done}},
        ),
        (
            "/collections/{collection}/",
            "post",
            "GetStream: add an object to a collection",
            {
                "path_params": GsCollectionPath,
                "query": GsAuthQuery,
                "body": GsObjectIn,
                "responses": {201: GsObject},
                "errors": CONFLICT,
            },
        ),
    ]
    for method, summary, spec in (
        ("get", "one object", {"responses": {200: GsObject}}),
        ("put", "change an object's data", {"body": GsDataIn, "responses": {201: GsObject}}),
        ("delete", "delete an object", {"responses": {200: done}}),
    ):
        extra = {"description": OTHER_SPELLINGS.format(extra=", or `collections//…` as the Python client writes")}
        ops.append(
            (
                "/collections/{collection}/{id}/",
                method,
                f"GetStream: {summary}",
                {"path_params": GsObjectPath, "query": GsAuthQuery, **spec, **extra},
            )
        )
    return ops


def describe_bayeux(openapi: OpenApi) -> None:
    """``/faye``: Bayeux 1.0 over HTTP (the WebSocket transport at the same path carries the same messages)."""
    malformed = Reply(str, "Not a Bayeux message (or a bad JSONP callback)", media_type="text/plain")
    common = (
        "Bayeux 1.0 (Faye), the realtime endpoint of the GetStream JS client's `feed.subscribe`: "
        "`/meta/handshake`, then `/meta/subscribe` to `/site-<app_id>-feed-<slug><user_id>` with "
        "`ext: {api_key, signature}` (the feed's token), then `/meta/connect` (held until messages arrive). "
        "Failures are replies with `successful: false` and `error`, not HTTP errors. The WebSocket "
        "transport (`GET /faye` with Upgrade) carries the same message arrays."
    )
    openapi.operation(
        "/faye",
        "post",
        summary="GetStream realtime: Bayeux messages over long-polling",
        description=common + " A form body (`message=<json>`) is cross-origin long-polling.",
        tags=TAGS,
        body=BayeuxMessage | list[BayeuxMessage],
        form=BayeuxForm,
        responses={
            200: Reply(list[BayeuxReply], "One reply per message, then any delivered messages"),
            400: malformed,
            413: Reply(str, "The body is over 256 KiB", media_type="text/plain"),
        },
        problems={},
        security=[{}],
    )
    openapi.operation(
        "/faye",
        "get",
        summary="GetStream realtime: Bayeux messages over callback polling (JSONP)",
        description=common,
        tags=TAGS,
        query=BayeuxJsonpQuery,
        responses={
            200: Reply(str, "`/**/<callback>([replies]);`", media_type="text/javascript"),
            400: malformed,
        },
        problems={},
        security=[{}],
    )


__all__ = ["describe", "describe_bayeux", "model_operations"]
