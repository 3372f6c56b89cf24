"""Wink style (SPEC §8): ``/api/activity-stream`` — Wink's activity stream API, on our activity model.

Source: Wink's API reference ("Create activity stream entry", ``POST /api/activity-stream``, and
"List activity stream for entity", ``GET /api/activity-stream/{entityIdentifier}/list``, at
wink.travel/api and academy.wink.travel/api). An entry is tracked against an entity
(``entityIdentifier``): it lands in feed ``entity:<entityIdentifier>``. Errors are RFC 9457
problems, as Wink's own are.

``Wink-Version``: Wink documents ``2.0`` as the only allowed value and ``2.0.0`` as the default,
so a missing header means 2.0; ``2.0`` and ``2.0.0`` are accepted and anything else is a 400.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import BadRequest, Invalid
from ..http import caller, json_response, read_json
from ..models import FEED_NAME, parse_time
from ..openapi import COMMON_PROBLEMS, OpenApi, Reply
from ..service import FeedService, PageQuery
from . import Field, FieldError, FieldTable, invalid, text
from .schemas import WinkEntityPath, WinkEntry, WinkEntryIn, WinkEntryPath, WinkEntryUpdate, WinkHeaders

#: ``Wink-Version`` values served (Wink: "Allowed values: 2.0", "default: 2.0.0").
WINK_VERSIONS = frozenset({"2.0", "2.0.0"})

#: ``acl`` → audience. SPEC §8's four values, plus Wink's own documented ones as aliases.
ACL_TO_AUDIENCE: dict[str, list[dict[str, Any]]] = {
    "EVERYONE": [{"type": "everyone"}],
    "PUBLIC": [{"type": "public"}],
    "MEMBERS": [{"type": "members"}],
    "PRIVATE": [],  # only the author (and, as always, the feed's admins)
    "AUTHENTICATED": [{"type": "everyone"}],  # Wink's name for "any signed-in user"
    "OWNER": [],
    "ADMIN": [],  # feed admins see everything anyway; the author still sees its own entry
}


def _acl_in(value: Any) -> list[dict[str, Any]]:
    if value not in ACL_TO_AUDIENCE:
        raise FieldError(f"must be one of {', '.join(ACL_TO_AUDIENCE)}")
    return ACL_TO_AUDIENCE[value]


def _acl_out(audience: Any) -> str:
    """The closest acl: the widest audience entry wins; anything narrower reads as PRIVATE."""
    kinds = {e.get("type") for e in audience if isinstance(e, dict)}
    for kind, acl in (("public", "PUBLIC"), ("everyone", "EVERYONE"), ("members", "MEMBERS")):
        if kind in kinds:
            return acl
    return "PRIVATE"


def _entity_in(value: Any) -> dict[str, Any]:
    ident = text(value)
    if not FEED_NAME.fullmatch(f"entity:{ident}"):
        raise FieldError("must be 1-121 characters of A-Z a-z 0-9 _ - : . @")
    return {"id": ident, "type": "entity"}


def _entity_out(obj: Any) -> Any:
    return obj.get("id") if isinstance(obj, dict) else obj


def _time_in(value: Any) -> str:
    try:
        parse_time(value)
    except (TypeError, ValueError):
        raise FieldError("must be an ISO 8601 date-time, e.g. 2026-01-14T09:30:00") from None
    return str(value)


def _attachment_in(value: Any) -> list[dict[str, Any]]:
    return [{"type": "file", "id": text(value)}]


def _attachment_out(attachments: Any) -> Any:
    return next((a.get("id") for a in attachments if isinstance(a, dict) and a.get("type") == "file"), None)


_USER_KEYS = {"userIdentifier": "id", "name": "name", "profilePictureUrl": "avatar"}


def _user_in(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError("must be an object with userIdentifier")
    unknown = sorted(set(value) - set(_USER_KEYS))
    if unknown:
        raise FieldError(f"unknown field(s) {', '.join(unknown)}")
    if not isinstance(value.get("userIdentifier"), str) or not value["userIdentifier"]:
        raise FieldError("required", at="userIdentifier")
    return {_USER_KEYS[k]: v for k, v in value.items() if v not in (None, "")}


def _user_out(actor: Any) -> Any:
    if not isinstance(actor, dict):
        return {"userIdentifier": actor}
    back = {ours: theirs for theirs, ours in _USER_KEYS.items()}
    return {back[k]: actor[k] for k in ("id", "name", "avatar") if actor.get(k) is not None}


#: Wink entry ↔ our activity. ``verb`` has no Wink field: it is ``i18nKey`` when given, else "comment".
FIELDS = FieldTable(
    Field("acl", "audience", _acl_in, _acl_out, required=True),
    Field("entityIdentifier", "object", _entity_in, _entity_out, required=True),
    Field("eventDate", "time", _time_in),
    Field("emotion", "emotion", text),
    Field("comment", "text", text),
    Field("i18nKey", "i18n_key", text),
    Field("attachmentId", "attachments", _attachment_in, _attachment_out),
    Field("user", "actor", _user_in, _user_out),
    ignore=("id", "createdDate", "lastUpdate", "version"),  # server-owned; a fetched entry may be sent back
    blank_is_absent=True,
)


def to_activity(raw: Any) -> tuple[str, dict[str, Any]]:
    """A Wink entry → (feed, our activity); 422 in Wink's field names."""
    errors: list[dict[str, Any]] = []
    try:
        activity = FIELDS.to_ours(raw)
    except Invalid as exc:
        activity, errors = {}, list(exc.errors or [])
    if isinstance(raw, dict) and FIELDS.absent(raw.get("comment")) and FIELDS.absent(raw.get("i18nKey")):
        msg = "one of comment or i18nKey is required"
        errors += [{"loc": n, "msg": msg, "type": "missing"} for n in ("comment", "i18nKey")]
    if errors:
        raise invalid(errors)
    activity["verb"] = activity.get("i18n_key", "comment")
    return f"entity:{activity['object']['id']}", activity


def to_entry(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored activity → a Wink entry (server-owned fields first, as Wink lists them)."""
    entry: dict[str, Any] = {
        "id": doc["id"],
        "createdDate": doc.get("created_at"),
        "lastUpdate": doc.get("updated_at"),
        "version": doc.get("version"),
    }
    entry.update(FIELDS.to_theirs(doc))
    return entry


def _check_version(request: Request) -> None:
    version = request.headers.get("wink-version")
    if version is not None and version.strip() not in WINK_VERSIONS:
        raise BadRequest(
            f"unsupported Wink-Version {version!r}: this server speaks Wink API 2.0 "
            "(send 'Wink-Version: 2.0', or leave the header out)"
        )


class WinkApi:
    """``/api/activity-stream`` handlers, bound to one service."""

    def __init__(self, service: FeedService, *, max_body_bytes: int) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[Route]:
        """Starlette routes of the Wink dialect."""
        return [
            Route("/api/activity-stream", self.create, methods=["POST"]),
            Route("/api/activity-stream/{entry_id}", self.update, methods=["PUT"]),
            Route("/api/activity-stream/{entity}/list", self.list_stream, methods=["GET"]),
        ]

    async def create(self, request: Request) -> Response:
        """Add an entry → 201 with the stored entry in Wink's shape."""
        _check_version(request)
        principal = caller(request)
        feed, activity = to_activity(await read_json(request, self.max_body_bytes))
        with FIELDS.their_names():
            [body] = await self.service.post(principal, feed, [activity], batch=False)
        return json_response(to_entry(orjson.loads(body)), 201)

    async def update(self, request: Request) -> Response:
        """Replace an entry; the body's ``version`` is the optimistic lock (stale → 412)."""
        _check_version(request)
        principal = caller(request)
        raw = await read_json(request, self.max_body_bytes)
        entry_id = request.path_params["entry_id"]
        feed, activity = to_activity(raw)
        version = raw.get("version")
        errors = []
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            errors.append(
                {"loc": "version", "msg": "required: the version you read (optimistic lock)", "type": "missing"}
            )
        if raw.get("id") not in (None, "", entry_id):
            errors.append({"loc": "id", "msg": "must match the URL", "type": "value_error"})
        if errors:
            raise invalid(errors)
        with FIELDS.their_names():
            body = await self.service.replace(principal, feed, entry_id, activity, if_match=version)
        return json_response(to_entry(orjson.loads(body)))

    async def list_stream(self, request: Request) -> Response:
        """The entity's latest entries (up to the page limit), oldest first, as Wink lists them."""
        _check_version(request)
        principal = caller(request)
        feed = f"entity:{request.path_params['entity']}"
        page = await self.service.read(principal, feed, PageQuery(limit=self.service.max_page))
        return json_response([to_entry(orjson.loads(body)) for body in reversed(page.bodies)])

    def describe(self, openapi: OpenApi) -> None:
        """Add the Wink paths to the OpenAPI description (from ``schemas``' models)."""
        problems = {
            **COMMON_PROBLEMS,
            400: "Malformed JSON or an unsupported Wink-Version",
            422: "Invalid fields (in Wink's names)",
        }
        openapi.operation(
            "/api/activity-stream",
            "post",
            summary="Wink: create an activity stream entry (feed entity:<entityIdentifier>)",
            tags=["dialect: Wink"],
            headers=WinkHeaders,
            body=WinkEntryIn,
            responses={201: Reply(WinkEntry, "The stored entry")},
            problems=problems,
        )
        openapi.operation(
            "/api/activity-stream/{entry_id}",
            "put",
            summary="Wink: replace an entry (the body's version is the optimistic lock)",
            tags=["dialect: Wink"],
            path_params=WinkEntryPath,
            headers=WinkHeaders,
            body=WinkEntryUpdate,
            responses={200: Reply(WinkEntry, "The stored entry")},
            problems={**problems, 404: "Unknown, or hidden from the caller", 412: "Stale version"},
        )
        openapi.operation(
            "/api/activity-stream/{entity}/list",
            "get",
            summary="Wink: the entity's latest entries, oldest first",
            tags=["dialect: Wink"],
            path_params=WinkEntityPath,
            headers=WinkHeaders,
            responses={200: Reply(list[WinkEntry], "Entries, oldest first")},
            problems=problems,
        )


__all__ = ["FIELDS", "WINK_VERSIONS", "WinkApi", "to_activity", "to_entry"]
