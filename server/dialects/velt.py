"""Velt style (SPEC §8): Velt's activity-log REST API (``POST /v2/activities/add|get|update|delete``).

Source: Velt's REST API reference, "Activity Logs" (docs.velt.dev/api-reference/rest-apis/v2/
activities/*, the velt-js/docs repository). Bodies are ``{"data": {...}}``; answers are
``{"result": {"status": "success", "message": …, "data": …}}`` and failures
``{"error": {"message": …, "status": "<canonical code>"}}`` — never RFC 9457 problems here.

Activities of document ``D`` in organization ``O`` live in feed ``org:O:doc:D``. Our activity ids
are unique per feed, so ``documentId`` is required by get, update and delete too (Velt makes it
optional there); an organization-wide call is a 400 naming the missing field.

Authentication: ``x-velt-auth-token`` carries one of *our* JWTs or API keys (a JWT has two dots);
``x-velt-api-key`` is accepted and ignored. Without it, ``Authorization``/``X-API-Key`` work too.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..acl import Principal, Right, actor_id
from ..errors import FeedError, NotFound, Unauthorized, Unavailable
from ..http import caller, json_response, read_json
from ..models import FEED_NAME, parse_time, time_ms
from ..openapi import OpenApi, Reply
from ..service import FeedService, PageQuery
from . import Field, FieldError, FieldTable, invalid, mapping, text
from .schemas import (
    VeltAddResponse,
    VeltError,
    VeltGetResponse,
    VeltHeaders,
    VeltOutcomesResponse,
    velt_models,
)

log = logging.getLogger("feedserver.dialects.velt")

FEATURE_TYPES = ("comment", "reaction", "recorder", "crdt", "custom")
#: Velt's paths, and the header carrying the caller's credential there (``http.PrincipalBackend``).
PREFIX = "/v2/activities/"
TOKEN_HEADER = "x-velt-auth-token"
#: Velt's own default page size; larger requests are served this many at most.
MAX_PAGE_SIZE = 1000
#: Native pages one get request may read before answering with what it found and a pageToken.
_SCAN_ROUNDS = 25
#: A ULID of time 0: the lower bound of an ascending read.
_FIRST = "0" * 26

#: Our error → (Velt/Google canonical status, HTTP status of that canonical code).
_CANONICAL: dict[int, tuple[str, int]] = {
    400: ("INVALID_ARGUMENT", 400),
    401: ("UNAUTHENTICATED", 401),
    403: ("PERMISSION_DENIED", 403),
    404: ("NOT_FOUND", 404),
    409: ("ALREADY_EXISTS", 409),
    412: ("FAILED_PRECONDITION", 400),
    413: ("INVALID_ARGUMENT", 400),
    422: ("INVALID_ARGUMENT", 400),
    429: ("RESOURCE_EXHAUSTED", 429),
    503: ("UNAVAILABLE", 503),
}


def _feature_type(value: Any) -> str:
    if value not in FEATURE_TYPES:
        raise FieldError(f"must be one of {', '.join(FEATURE_TYPES)}")
    return str(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError("must be true or false")
    return value


_USER_RENAMES = {"userId": "id", "photoUrl": "avatar"}
_USER_BACK = {ours: theirs for theirs, ours in _USER_RENAMES.items()}


def _user_in(value: Any) -> dict[str, Any]:
    """A Velt ``User`` → our actor: ``userId`` → ``id``, ``photoUrl`` → ``avatar``, the rest kept."""
    if not isinstance(value, dict):
        raise FieldError("must be a User object with userId")
    if not isinstance(value.get("userId"), str) or not value["userId"]:
        raise FieldError("required", at="userId")
    return {str(_USER_RENAMES.get(k, k)): v for k, v in value.items() if k not in ("id", "avatar") and v is not None}


def _user_out(actor: Any) -> dict[str, Any]:
    if not isinstance(actor, dict):
        return {"userId": actor}
    return {str(_USER_BACK.get(k, k)): v for k, v in actor.items()}


#: Velt activity ↔ our activity. ``object`` is the document (``{"id": documentId, "type": "document"}``).
ACTIVITY = FieldTable(
    Field("id", "id", text),
    Field("featureType", "feature_type", _feature_type, required=True),
    Field("actionType", "verb", text, required=True),
    Field("actionUser", "actor", _user_in, _user_out, required=True),
    Field("targetEntityId", "target.id", text),
    Field("targetSubEntityId", "target.sub_id", text),
    Field("changes", "changes", mapping),
    Field("entityData", "entity_data"),
    Field("entityTargetData", "entity_target_data"),
    Field("displayMessageTemplate", "template", text),
    Field("displayMessageTemplateData", "template_data", mapping),
    Field("actionIcon", "icon", text),
    Field("isActivityResolverUsed", "activity_resolver_used", _flag),
)
#: What ``/v2/activities/update`` may change (Velt's documented update fields), besides the ``id``.
UPDATABLE = FieldTable(
    *(
        f
        for f in ACTIVITY.fields
        if f.theirs
        in (
            "changes",
            "entityData",
            "entityTargetData",
            "displayMessageTemplate",
            "displayMessageTemplateData",
            "actionIcon",
        )
    ),
    ignore=("id",),
)


def to_activity(raw: Any, document_id: str, loc: str) -> dict[str, Any]:
    """A Velt activity → our activity (its object is the document); 422 in Velt's names."""
    activity = ACTIVITY.to_ours(raw, loc)
    target = activity.get("target", {})
    errors = []
    if activity["feature_type"] == "custom" and "id" not in target:
        errors.append({"loc": f"{loc}.targetEntityId", "msg": "required when featureType is custom", "type": "missing"})
    if target and "id" not in target:
        errors.append({"loc": f"{loc}.targetSubEntityId", "msg": "needs targetEntityId", "type": "missing"})
    if errors:
        raise invalid(errors)
    activity["object"] = {"id": document_id, "type": "document"}
    return activity


def to_velt(doc: dict[str, Any], organization_id: str, document_id: str) -> dict[str, Any]:
    """A stored activity → a Velt activity record (as ``/v2/activities/get`` returns them)."""
    if isinstance(doc.get("target"), str):
        doc = {**doc, "target": {"id": doc["target"]}}
    fields = ACTIVITY.to_theirs(doc)
    out: dict[str, Any] = {"id": doc["id"], "featureType": fields.pop("featureType", "custom")}
    fields.pop("id", None)
    out.update(fields)
    out["metadata"] = {"documentId": document_id, "organizationId": organization_id}
    out["timestamp"] = time_ms(parse_time(doc["time"]))
    return out


def _target_id(doc: dict[str, Any]) -> Any:
    target = doc.get("target")
    return target.get("id") if isinstance(target, dict) else target


def velt_result(message: str, data: Any, **extra: Any) -> Response:
    """Velt's success body."""
    return json_response({"result": {"status": "success", "message": message, "data": data, **extra}})


def velt_error(exc: FeedError) -> Response:
    """Velt's failure body for one of our errors, with the HTTP status of its canonical code."""
    status, http = _CANONICAL.get(exc.status, ("INTERNAL", 500))
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after is not None else None
    return json_response({"error": {"message": exc.detail, "status": status}}, http, headers)


def _data(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        raise invalid([{"loc": "data", "msg": "required: an object", "type": "missing"}])
    return raw["data"]


def _ids(data: dict[str, Any]) -> tuple[str, str, str]:
    """(organizationId, documentId, feed) of a request."""
    org, document = data.get("organizationId"), data.get("documentId")
    errors = []
    if not isinstance(org, str) or not org:
        errors.append({"loc": "data.organizationId", "msg": "required", "type": "missing"})
    if not isinstance(document, str) or not document:
        errors.append(
            {"loc": "data.documentId", "msg": "required (activities are stored per document)", "type": "missing"}
        )
    if errors:
        raise invalid(errors)
    feed = f"org:{org}:doc:{document}"
    if not FEED_NAME.fullmatch(feed):
        raise invalid(
            [
                {
                    "loc": "data.documentId",
                    "msg": "organizationId and documentId: at most 116 characters together, of A-Z a-z 0-9 _ - : . @",
                    "type": "value_error",
                }
            ]
        )
    return str(org), str(document), feed


def _str_list(data: dict[str, Any], name: str, allowed: tuple[str, ...] = ()) -> list[str] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid([{"loc": f"data.{name}", "msg": "must be a list of strings", "type": "list_type"}])
    bad = [v for v in value if allowed and v not in allowed]
    if bad:
        raise invalid([{"loc": f"data.{name}", "msg": f"must be among {', '.join(allowed)}", "type": "enum"}])
    return value


def _opt_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise invalid([{"loc": f"data.{name}", "msg": "must be a non-empty string", "type": "string_type"}])
    return value


def _encode_token(order: str, edge: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"o": order, "b": edge})).decode().rstrip("=")


def _decode_token(token: Any, order: str) -> str:
    bad = invalid([{"loc": "data.pageToken", "msg": "not a pageToken of this query", "type": "value_error"}])
    if not isinstance(token, str) or not token:
        raise bad
    try:
        value = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(value, dict) or value.get("o") != order or not isinstance(value.get("b"), str):
        raise bad
    return str(value["b"])


class VeltApi:
    """``/v2/activities/*`` handlers, bound to one service."""

    def __init__(self, service: FeedService, *, max_body_bytes: int) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[Route]:
        """Starlette routes of the Velt dialect (other methods get a Velt-shaped 405)."""
        routes = []
        for name, handler in (("add", self.add), ("get", self.get), ("update", self.update), ("delete", self.delete)):
            path = PREFIX + name
            routes.append(Route(path, self._velt(handler), methods=["POST"]))
            routes.append(Route(path, self._not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]))
        return routes

    @staticmethod
    def _velt(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Run ``handler``, answering every failure in Velt's error shape."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except FeedError as exc:
                return velt_error(exc)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return json_response({"error": {"message": "internal error", "status": "INTERNAL"}}, 500)

        endpoint.__doc__ = handler.__doc__
        return endpoint

    async def _not_allowed(self, request: Request) -> Response:
        return json_response(
            {"error": {"message": f"{request.method} is not supported; use POST", "status": "INVALID_ARGUMENT"}},
            405,
            {"Allow": "POST"},
        )

    @staticmethod
    def _principal(request: Request) -> Principal:
        """The caller of ``x-velt-auth-token`` (a JWT or an API key of this server), as the
        authentication middleware found it (``TOKEN_HEADER`` under ``PREFIX``); anonymous is refused."""
        principal = caller(request)
        if not principal.authenticated:
            raise Unauthorized("x-velt-auth-token is required (one of this server's JWTs or API keys)")
        return principal

    async def add(self, request: Request) -> Response:
        """Add activities to the document's feed; all or nothing."""
        principal = self._principal(request)
        data = _data(await read_json(request, self.max_body_bytes))
        _, document, feed = _ids(data)
        raw_items = data.get("activities")
        if not isinstance(raw_items, list) or not raw_items:
            raise invalid([{"loc": "data.activities", "msg": "required: a non-empty list", "type": "missing"}])
        items, errors = [], []
        for i, raw in enumerate(raw_items):
            try:
                items.append(to_activity(raw, document, f"data.activities.{i}"))
            except FeedError as exc:
                errors.extend(exc.errors or [])
        if errors:
            raise invalid(errors)
        with ACTIVITY.their_names(prefix="data."):
            await self.service.post(principal, feed, items, batch=True)
        message = "Activity(s) added successfully."
        return velt_result(message, {"success": True, "message": message})

    async def get(self, request: Request) -> Response:
        """Activities of a document, filtered, in ``order``, ``pageSize`` at a time."""
        principal = self._principal(request)
        data = _data(await read_json(request, self.max_body_bytes))
        org, document, feed = _ids(data)
        feature_types = _str_list(data, "featureTypes", FEATURE_TYPES)
        action_types = _str_list(data, "actionTypes")
        activity_ids = _str_list(data, "activityIds")
        user_id, target = _opt_str(data, "userId"), _opt_str(data, "targetEntityId")
        order = data.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid([{"loc": "data.order", "msg": "must be asc or desc", "type": "enum"}])
        page_size = data.get("pageSize", MAX_PAGE_SIZE)
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise invalid([{"loc": "data.pageSize", "msg": "must be an integer >= 1", "type": "int_type"}])
        page_size = min(page_size, MAX_PAGE_SIZE)

        def wanted(doc: dict[str, Any]) -> bool:
            return (
                (feature_types is None or doc.get("feature_type", "custom") in feature_types)
                and (action_types is None or doc.get("verb") in action_types)
                and (user_id is None or actor_id(doc) == user_id)
                and (target is None or _target_id(doc) == target)
            )

        token: str | None = None
        if activity_ids is not None:
            docs = [d for d in await self._by_ids(principal, feed, activity_ids) if wanted(d)]
            docs.sort(key=lambda d: (d["time"], d["id"]), reverse=order == "desc")
            docs = docs[:page_size]
        else:
            start = _decode_token(data["pageToken"], order) if data.get("pageToken") else None
            docs, token = await self._scan(
                principal,
                feed,
                wanted,
                order=order,
                start=start,
                page_size=page_size,
                verb=action_types[0] if action_types and len(action_types) == 1 else None,
                actor=user_id,
            )
        records = [to_velt(d, org, document) for d in docs]
        extra = {"pageToken": token} if token else {}
        return velt_result("Activity(s) retrieved successfully.", records, **extra)

    async def _by_ids(self, principal: Principal, feed: str, ids: list[str]) -> list[dict[str, Any]]:
        if len(ids) > self.service.max_batch:
            raise invalid([{"loc": "data.activityIds", "msg": f"at most {self.service.max_batch}", "type": "too_long"}])
        docs = []
        for activity_id in dict.fromkeys(ids):
            try:
                docs.append(orjson.loads(await self.service.get(principal, feed, activity_id)))
            except NotFound:
                continue
        return docs

    async def _scan(
        self,
        principal: Principal,
        feed: str,
        wanted: Callable[[dict[str, Any]], bool],
        *,
        order: str,
        start: str | None,
        page_size: int,
        verb: str | None = None,
        actor: str | None = None,
        max_rounds: int | None = _SCAN_ROUNDS,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``page_size`` wanted activities after ``start``, and the token of the rest (None at the end).

        Reads native pages (``verb``/``actor`` filtered by the service, the rest by ``wanted``) for at
        most ``max_rounds`` pages, so a sparse match costs bounded work and returns a token early.
        """
        ascending = order == "asc"
        bound = start or (_FIRST if ascending else None)
        found: list[dict[str, Any]] = []
        rounds = 0
        while True:
            limit = min(page_size - len(found), self.service.max_page)
            if ascending:
                query = PageQuery(limit=limit, id_gt=bound, verb=verb, actor=actor)
            else:
                query = PageQuery(limit=limit, id_lt=bound, verb=verb, actor=actor)
            page = await self.service.read(principal, feed, query)
            bodies = reversed(page.bodies) if ascending else page.bodies
            found.extend(doc for doc in map(orjson.loads, bodies) if wanted(doc))
            if page.next is None:
                return found, None
            bound = str(page.next["id_gt" if ascending else "id_lt"])
            rounds += 1
            if len(found) >= page_size or (max_rounds is not None and rounds >= max_rounds):
                return found, _encode_token(order, bound)

    async def update(self, request: Request) -> Response:
        """Change fields of existing activities; one outcome per id."""
        principal = self._principal(request)
        data = _data(await read_json(request, self.max_body_bytes))
        _, _, feed = _ids(data)
        raw_items = data.get("activities")
        if not isinstance(raw_items, list) or not raw_items:
            raise invalid([{"loc": "data.activities", "msg": "required: a non-empty list", "type": "missing"}])
        if len(raw_items) > self.service.max_batch:
            raise invalid([{"loc": "data.activities", "msg": f"at most {self.service.max_batch}", "type": "too_long"}])
        changes: list[tuple[str, dict[str, Any]]] = []
        errors: list[dict[str, Any]] = []
        for i, raw in enumerate(raw_items):
            loc = f"data.activities.{i}"
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
                errors.append({"loc": f"{loc}.id", "msg": "required", "type": "missing"})
                continue
            try:
                fields = UPDATABLE.to_ours(raw, loc)
            except FeedError as exc:
                errors.extend(exc.errors or [])
                continue
            if not fields:
                errors.append({"loc": loc, "msg": "nothing to update", "type": "missing"})
            changes.append((raw["id"], fields))
        if errors:
            raise invalid(errors)
        self.service.require(principal, feed, Right.WRITE)
        outcomes: dict[str, dict[str, Any]] = {}
        for activity_id, fields in changes:
            try:
                with UPDATABLE.their_names():
                    await self.service.patch(principal, feed, activity_id, {"set": fields}, if_match=None)
                outcomes[activity_id] = {"success": True, "message": "Activity updated."}
            except Unavailable:
                raise
            except FeedError as exc:
                outcomes[activity_id] = {"success": False, "message": f"Failed to update activity. {exc.detail}"}
        return velt_result("Activity(s) updated successfully.", outcomes)

    async def delete(self, request: Request) -> Response:
        """Delete activities by id, by target entity, or all of the document's; one outcome per id."""
        principal = self._principal(request)
        data = _data(await read_json(request, self.max_body_bytes))
        _, _, feed = _ids(data)
        ids = _str_list(data, "activityIds")
        target = _opt_str(data, "targetEntityId")
        if ids is not None and len(ids) > self.service.max_batch:
            raise invalid([{"loc": "data.activityIds", "msg": f"at most {self.service.max_batch}", "type": "too_long"}])
        self.service.require(principal, feed, Right.WRITE)
        outcomes: dict[str, dict[str, Any]] = {}
        if ids is None:  # everything of the document (of the target entity) the caller can see
            docs, _ = await self._scan(
                principal,
                feed,
                lambda d: target is None or _target_id(d) == target,
                order="desc",
                start=None,
                page_size=10**9,
                max_rounds=None,
            )
            ids = [d["id"] for d in docs]
        for activity_id in dict.fromkeys(ids):
            try:
                if target is not None:
                    doc = orjson.loads(await self.service.get(principal, feed, activity_id))
                    if _target_id(doc) != target:
                        raise NotFound(f"activity {activity_id} does not target {target}")
                await self.service.delete(principal, feed, activity_id)
                outcomes[activity_id] = {"success": True, "message": "Activity deleted."}
            except Unavailable:
                raise
            except FeedError as exc:
                outcomes[activity_id] = {"success": False, "message": f"Failed to delete activity. {exc.detail}"}
        return velt_result("Activity(s) deleted successfully.", outcomes)

    def describe(self, openapi: OpenApi) -> None:
        """Add the Velt paths to the OpenAPI description (errors in Velt's shape, not problems)."""
        bodies = velt_models(self.service.max_batch)
        error = Reply(VeltError, "Velt error")
        errors = {
            400: Reply(VeltError, "INVALID_ARGUMENT (bad or missing fields) or FAILED_PRECONDITION"),
            401: Reply(VeltError, "UNAUTHENTICATED: no or invalid x-velt-auth-token"),
            403: Reply(VeltError, "PERMISSION_DENIED"),
            404: Reply(VeltError, "NOT_FOUND"),
            409: Reply(VeltError, "ALREADY_EXISTS"),
            429: Reply(VeltError, "RESOURCE_EXHAUSTED (see Retry-After)"),
            503: Reply(VeltError, "UNAVAILABLE (see Retry-After)"),
        }
        security: list[dict[str, list[str]]] = [{"veltAuthToken": []}, {"bearer": []}, {"apiKey": []}]
        openapi.security_scheme(
            "veltAuthToken",
            {"type": "apiKey", "in": "header", "name": "x-velt-auth-token", "description": VeltHeaders.__doc__},
        )
        for name, summary, result in (
            ("add", "Velt: add activity logs to feed org:<organizationId>:doc:<documentId>", VeltAddResponse),
            ("get", "Velt: activity logs of a document (filters, order, pageSize, pageToken)", VeltGetResponse),
            ("update", "Velt: update activity logs by id", VeltOutcomesResponse),
            ("delete", "Velt: delete activity logs by ids, targetEntityId or document", VeltOutcomesResponse),
        ):
            openapi.operation(
                f"/v2/activities/{name}",
                "post",
                summary=summary,
                tags=["dialect: Velt"],
                headers=VeltHeaders,
                body=bodies[name],
                responses={200: Reply(result, "Velt result"), **errors, 500: error},
                problems={},
                security=security,
            )


__all__ = ["ACTIVITY", "FEATURE_TYPES", "UPDATABLE", "VeltApi", "to_activity", "to_velt", "velt_error"]
