"""ActivityEntry style (SPEC §8): ``POST /v1/activity-entries`` → ``201 {"id": "…"}``.

Source: the ``ActivityEntry`` type of emakin's ``$ActivityStream`` scripting API
(wiki.emakin.com, "$ActivityStream"): ``@type``, ``actor`` (string or Identity), ``attachments``
(string ids or ``{@type: file|link|video, id}``), ``objectId`` + ``objectType`` (required),
``publishedAt``, ``targets`` (``{@type: Identity|Everyone|Members|Public, targetId, notify}``,
``@type`` defaulting to Identity). The entry lands in feed ``<objectType>:<objectId>``.

Any other top-level field is kept as a custom field (as the native API does); errors are RFC 9457
problems, with locations in ActivityEntry's names.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..http import caller, json_response, read_json
from ..models import FEED_NAME, parse_time
from ..openapi import COMMON_PROBLEMS, OpenApi, Reply
from ..service import FeedService
from . import Field, FieldError, FieldTable, invalid, text
from .schemas import ActivityEntryIn, EntryCreated

#: ActivityTarget ``@type`` → audience type.
TARGET_TYPES = {"Identity": "identity", "Everyone": "everyone", "Members": "members", "Public": "public"}
ATTACHMENT_TYPES = ("file", "link", "video")


def _actor_in(value: Any) -> Any:
    """A string id, or an Identity object ``{id, name?, avatar?}`` (its ``@type`` dropped)."""
    if isinstance(value, str):
        return text(value)
    if not isinstance(value, dict):
        raise FieldError("must be an identity id or an Identity object")
    if value.get("@type", "Identity") != "Identity":
        raise FieldError("must be Identity", at="@type")
    if not isinstance(value.get("id"), str) or not value["id"]:
        raise FieldError("required", at="id")
    return {k: v for k, v in value.items() if k != "@type"}


def _attachments_in(value: Any) -> list[dict[str, Any]]:
    """String ids are files; objects carry ``@type`` (default file) and ``id`` (a link's id is its url)."""
    if not isinstance(value, list):
        raise FieldError("must be a list")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            out.append({"type": "file", "id": item})
            continue
        if not isinstance(item, dict):
            raise FieldError("must be a file id or an attachment object", at=str(i))
        kind = item.get("@type", "file")
        if kind not in ATTACHMENT_TYPES:
            raise FieldError(f"must be one of {', '.join(ATTACHMENT_TYPES)}", at=f"{i}.@type")
        attachment = {"type": kind, **{k: v for k, v in item.items() if k != "@type"}}
        if kind == "link" and "url" not in attachment and isinstance(attachment.get("id"), str):
            attachment["url"] = attachment.pop("id")
        out.append(attachment)
    return out


def _time_in(value: Any) -> str:
    try:
        parse_time(value)
    except (TypeError, ValueError):
        raise FieldError("must be an ISO 8601 date-time with offset, e.g. 2026-01-14T09:30:00+01:00") from None
    return str(value)


def _targets_in(value: Any) -> list[dict[str, Any]]:
    """ActivityTargets → audience entries; ``notify`` is carried over."""
    if not isinstance(value, list):
        raise FieldError("must be a list")
    out = []
    for i, target in enumerate(value):
        if not isinstance(target, dict):
            raise FieldError("must be an ActivityTarget object", at=str(i))
        unknown = sorted(set(target) - {"@type", "targetId", "notify"})
        if unknown:
            raise FieldError(f"unknown field(s) {', '.join(unknown)}", at=str(i))
        kind = target.get("@type", "Identity")
        if kind not in TARGET_TYPES:
            raise FieldError(f"must be one of {', '.join(TARGET_TYPES)}", at=f"{i}.@type")
        entry: dict[str, Any] = {"type": TARGET_TYPES[kind]}
        target_id = target.get("targetId")
        if kind == "Identity":
            if not isinstance(target_id, str) or not target_id:
                raise FieldError("required for an Identity target", at=f"{i}.targetId")
            entry["id"] = target_id
        elif target_id is not None:
            raise FieldError(f"only Identity targets take a targetId, not {kind}", at=f"{i}.targetId")
        notify = target.get("notify", False)
        if not isinstance(notify, bool):
            raise FieldError("must be true or false", at=f"{i}.notify")
        if notify:
            entry["notify"] = True
        out.append(entry)
    return out


#: ActivityEntry ↔ our activity; unknown names are kept as custom fields.
FIELDS = FieldTable(
    Field("@type", "verb", text, required=True),
    Field("actor", "actor", _actor_in),
    Field("attachments", "attachments", _attachments_in),
    Field("objectId", "object.id", text, required=True),
    Field("objectType", "object.type", text, required=True),
    Field("publishedAt", "time", _time_in),
    Field("targets", "audience", _targets_in),
    extra="keep",
)


def to_activity(raw: Any) -> tuple[str, dict[str, Any]]:
    """An ActivityEntry → (feed ``<objectType>:<objectId>``, our activity); 422 in its names."""
    activity = FIELDS.to_ours(raw)
    feed = f"{activity['object']['type']}:{activity['object']['id']}"
    if not FEED_NAME.fullmatch(feed):
        msg = "objectType:objectId must be a feed name: 1-128 characters of A-Z a-z 0-9 _ - : . @"
        raise invalid([{"loc": "objectType", "msg": msg, "type": "feed_name"}])
    return feed, activity


class ActivityEntryApi:
    """``POST /v1/activity-entries``, bound to one service."""

    def __init__(self, service: FeedService, *, max_body_bytes: int) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[Route]:
        """Starlette routes of the ActivityEntry dialect."""
        return [Route("/v1/activity-entries", self.create, methods=["POST"])]

    async def create(self, request: Request) -> Response:
        """Publish an entry → 201 ``{"id": "…"}``."""
        principal = caller(request)
        feed, activity = to_activity(await read_json(request, self.max_body_bytes))
        with FIELDS.their_names():
            [body] = await self.service.post(principal, feed, [activity], batch=False)
        return json_response({"id": orjson.loads(body)["id"]}, 201)

    def describe(self, openapi: OpenApi) -> None:
        """Add the ActivityEntry path to the OpenAPI description (from ``schemas``' models)."""
        openapi.operation(
            "/v1/activity-entries",
            "post",
            summary="ActivityEntry: publish to feed <objectType>:<objectId>",
            tags=["dialect: ActivityEntry"],
            body=ActivityEntryIn,
            responses={201: Reply(EntryCreated, "The new activity's id")},
            problems={
                **COMMON_PROBLEMS,
                413: "The activity is over [feeds] max_activity_bytes",
                422: "Invalid fields (in ActivityEntry's names)",
            },
        )


__all__ = ["FIELDS", "TARGET_TYPES", "ActivityEntryApi", "to_activity"]
