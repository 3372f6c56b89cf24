"""GetStream's wire shapes (SPEC §11), without I/O: activities both ways, times, errors, booleans.

GetStream activities are flat: ``actor``/``verb``/``object``/``target`` are strings, ``foreign_id``
and ``target`` are ``""`` when absent, ``origin`` is null, and times are six-digit, zone-less UTC
(``2026-01-14T09:30:00.123000``). Our store keeps milliseconds, so every time is truncated to the
millisecond on the way in — on writes *and* on ``(foreign_id, time)`` lookups — and printed with
three trailing zeros on the way out: a returned time always matches a lookup exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from ...errors import (
    BadRequest,
    Conflict,
    FeedError,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from ...models import FEED_NAME, dumps, format_time, parse_time, time_ms

#: Audience given to activities written through this API that carry none (SPEC §11).
DEFAULT_AUDIENCE = [{"type": "everyone"}]
#: Stored fields GetStream bodies never show.
_HIDDEN = frozenset({"feed", "seq", "version", "created_at", "updated_at", "origin"})
#: GetStream fields the dialect handles itself (never stored as custom fields).
_DROPPED_INPUT = frozenset({"id", "origin", "duration"})
#: Fields for which null or "" means "not given".
_OPTIONAL_CORE = frozenset({"actor", "verb", "object", "target", "foreign_id", "time", "to"})
_TRUE = frozenset({"true", "True", "1", "yes"})


# -- errors ----------------------------------------------------------------------------------------


class GetStreamError(FeedError):
    """An error in GetStream's terms: exception name, numeric code and HTTP status."""

    def __init__(
        self, exception: str, code: int, status: int, detail: str, fields: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.exception = exception
        self.gs_code = code
        self.status = status
        self.fields = fields or {}


def api_key_error(detail: str) -> GetStreamError:
    """Unknown or missing ``api_key`` (checked before anything else)."""
    return GetStreamError("ApiKeyException", 2, 401, detail)


def signature_error(detail: str) -> GetStreamError:
    """A missing, malformed, expired or wrongly signed token."""
    return GetStreamError("SignatureException", 3, 401, detail)


def not_allowed(detail: str) -> GetStreamError:
    """The token's scope does not cover the call."""
    return GetStreamError("NotAllowedException", 17, 403, detail)


def input_error(detail: str, fields: dict[str, list[str]] | None = None) -> GetStreamError:
    """Bad input (GetStream's ``InputException``, code 4, status 400)."""
    return GetStreamError("InputException", 4, 400, detail, fields)


def does_not_exist(detail: str) -> GetStreamError:
    """An unknown resource."""
    return GetStreamError("DoesNotExistException", 16, 404, detail)


def as_getstream(exc: FeedError) -> GetStreamError:
    """Any error of the server in GetStream's terms (field errors become ``exception_fields``)."""
    if isinstance(exc, GetStreamError):
        return exc
    if isinstance(exc, Invalid | BadRequest):
        fields: dict[str, list[str]] = {}
        for err in exc.errors or ():
            fields.setdefault(str(err.get("loc") or "body"), []).append(str(err.get("msg")))
        return input_error(exc.detail, fields)
    if isinstance(exc, Unauthorized):
        return signature_error(exc.detail)
    if isinstance(exc, Forbidden):
        return not_allowed(exc.detail)
    if isinstance(exc, NotFound):
        return does_not_exist(exc.detail)
    if isinstance(exc, RateLimited):
        return GetStreamError("RateLimitReached", 9, 429, exc.detail)
    if isinstance(exc, Conflict | PreconditionFailed | PayloadTooLarge):
        return GetStreamError("InputException", 4, exc.status, exc.detail)
    if isinstance(exc, Unavailable):
        return GetStreamError("StreamApiException", 1, 503, exc.detail)
    return GetStreamError("StreamApiException", 1, exc.status, exc.detail)


def error_body(exc: GetStreamError, duration: str) -> dict[str, Any]:
    """GetStream's error document."""
    body: dict[str, Any] = {
        "code": exc.gs_code,
        "detail": exc.detail,
        "duration": duration,
        "exception": exc.exception,
        "status_code": exc.status,
    }
    if exc.fields:
        body["exception_fields"] = exc.fields
    return body


# -- small parsers ---------------------------------------------------------------------------------


def truthy(value: str | None) -> bool:
    """A query boolean as the clients send it: ``True`` (Python), ``true`` (JS) or ``1``."""
    return value is not None and value.strip() in _TRUE


def feed_name(slug: str, user_id: str) -> str:
    """GetStream feed ``slug``/``user_id`` → our feed name ``slug:user_id`` (422 when not one)."""
    name = f"{slug}:{user_id}"
    if not slug or not user_id or ":" in slug or not FEED_NAME.fullmatch(name):
        raise input_error(f"invalid feed {slug!r}/{user_id!r}", {"feed": ["slug and user id: letters, digits, _ -"]})
    return name


def feed_of_target(entry: Any) -> str:
    """A ``to`` entry (``"slug:id"`` or Python's ``"slug:id <token>"``) → the feed name."""
    if not isinstance(entry, str) or not entry.strip():
        raise input_error("to targets must be feed ids like 'notification:1'", {"to": ["a list of feed ids"]})
    name = entry.strip().split(" ", 1)[0]
    slug, _, user_id = name.partition(":")
    return feed_name(slug, user_id)


def lookup_time(value: Any) -> str:
    """The stored form of a time given to a ``(foreign_id, time)`` lookup (truncated to ms, UTC)."""
    try:
        return format_time(parse_time(value))
    except (TypeError, ValueError):
        raise input_error(f"invalid time {value!r}", {"time": ["an ISO 8601 time"]}) from None


def their_time(stored: str) -> str:
    """Our stored ``…T09:30:00.123Z`` → GetStream's ``…T09:30:00.123000``."""
    return stored[:-1] + "000" if stored.endswith("Z") and len(stored) == 24 else stored


def _scalar_text(value: Any) -> Any:
    """GetStream stores actor/verb/object/target as strings (``object: 3`` reads back ``"3"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return value


# -- activities ------------------------------------------------------------------------------------


def to_ours(raw: Any, *, loc: str = "") -> dict[str, Any]:
    """A GetStream activity → our activity input (audience ``everyone`` unless it carries one).

    Missing ``actor``/``verb``/``object`` is GetStream's ``InputException`` listing each field.
    """
    where = f"{loc}." if loc else ""
    if not isinstance(raw, dict):
        raise input_error(f"{loc or 'activity'} must be a JSON object")
    missing = [n for n in ("actor", "verb", "object") if raw.get(n) in (None, "")]
    if missing:
        raise input_error(
            f"missing required field(s): {', '.join(missing)}",
            {where + n: ["Missing data for required field."] for n in missing},
        )
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _DROPPED_INPUT or (value in (None, "") and name in _OPTIONAL_CORE):
            continue
        if name in ("actor", "verb", "object", "target", "foreign_id"):
            out[name] = _scalar_text(value)
        elif name == "time":
            try:
                out["time"] = format_time(parse_time(value))
            except (TypeError, ValueError):
                raise input_error(f"invalid time {value!r}", {where + "time": ["an ISO 8601 time"]}) from None
        elif name == "to":
            if not isinstance(value, list):
                raise input_error("to must be a list of feed ids", {where + "to": ["a list of feed ids"]})
            targets = list(dict.fromkeys(feed_of_target(t) for t in value))
            if targets:
                out["to"] = targets
        else:
            out[name] = value
    if "audience" not in out:
        out["audience"] = DEFAULT_AUDIENCE
    return out


def content_id(activity: Mapping[str, Any]) -> str:
    """A deterministic ULID for an activity with a ``time`` and no ``foreign_id``: the same content
    at the same time gets the same id, so writing it twice collapses to one (GetStream derives its
    UUIDv1 from the content the same way). The id's timestamp is the activity's time, as always."""
    ms = time_ms(parse_time(activity["time"]))
    digest = hashlib.sha256(dumps({k: v for k, v in activity.items() if k != "time"})).digest()
    bits = int.from_bytes(digest[:10], "big")  # 80 bits → 16 Crockford characters
    chars = [_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -5, -5)]
    chars += [_CROCKFORD[(bits >> shift) & 31] for shift in range(75, -5, -5)]
    return "".join(chars)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ref_text(value: Any) -> Any:
    """An actor/object/target as GetStream shows it: a string (our object form shows its id)."""
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return value


def to_theirs(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored activity → GetStream's activity (on every read: kept to plain dict operations)."""
    get = doc.get
    actor, obj, target, stored = get("actor"), get("object"), get("target"), get("time") or ""
    out: dict[str, Any] = {
        "id": get("id"),
        "actor": actor["id"] if type(actor) is dict and "id" in actor else actor,
        "verb": get("verb"),
        "object": obj["id"] if type(obj) is dict and "id" in obj else obj,
        "target": (target["id"] if type(target) is dict and "id" in target else target) or "",
        "foreign_id": get("foreign_id") or "",
        "time": stored[:-1] + "000" if len(stored) == 24 and stored[-1] == "Z" else stored,
        "origin": None,
    }
    for name, value in doc.items():
        if name not in _NOT_CUSTOM:
            out[name] = value
    to, audience = get("to"), get("audience")
    if to:
        out["to"] = to
    if audience and audience != DEFAULT_AUDIENCE:
        out["audience"] = audience
    return out


#: Stored fields ``to_theirs`` does not copy as custom fields (shown otherwise, or never).
_NOT_CUSTOM = _HIDDEN | {"id", "actor", "verb", "object", "target", "foreign_id", "time", "to", "audience"}


class RenderCache:
    """Stored body bytes → the GetStream JSON of that activity, for reads (bounded; oldest first).

    ``to_theirs`` is a pure function of the stored bytes, and a stored body changes with every
    write (``version``, ``updated_at``), so a hit is always current: feeds read over and over (the
    common case) cost a dictionary lookup per activity instead of a decode, reshape and encode.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._cache: dict[bytes, orjson.Fragment] = {}

    def fragments(self, bodies: list[bytes]) -> list[orjson.Fragment]:
        """Each body as a pre-encoded GetStream activity (``orjson.Fragment``, spliced when dumped)."""
        cache = self._cache
        out = []
        for body in bodies:
            fragment = cache.get(body)
            if fragment is None:
                fragment = orjson.Fragment(orjson.dumps(to_theirs(orjson.loads(body))))
                if len(cache) >= self.size:
                    del cache[next(iter(cache))]
                cache[body] = fragment
            out.append(fragment)
        return out


def keep_unchanged_refs(new: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """Where ``new`` (our input, from a GetStream body) names the same actor/object/target as the
    stored ``old`` by its id, keep the stored object form (a native ``{"id", "type"}`` survives an
    update through this API); keep the stored audience when the body carries none."""
    for name in ("actor", "object", "target"):
        if isinstance(old.get(name), dict) and new.get(name) == _ref_text(old[name]):
            new[name] = old[name]
    if new.get("audience") is DEFAULT_AUDIENCE and "audience" in old:
        new["audience"] = old["audience"]
    return new


def set_dotted(doc: dict[str, Any], path: str, value: Any) -> None:
    """GetStream's ``set``: a dotted path, creating (or replacing non-object) parents."""
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[last] = value


def unset_dotted(doc: dict[str, Any], path: str) -> None:
    """GetStream's ``unset``: remove a dotted path if it exists."""
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


__all__ = [
    "DEFAULT_AUDIENCE",
    "GetStreamError",
    "RenderCache",
    "api_key_error",
    "as_getstream",
    "content_id",
    "does_not_exist",
    "error_body",
    "feed_name",
    "feed_of_target",
    "input_error",
    "keep_unchanged_refs",
    "lookup_time",
    "not_allowed",
    "set_dotted",
    "signature_error",
    "their_time",
    "to_ours",
    "to_theirs",
    "truthy",
    "unset_dotted",
]
