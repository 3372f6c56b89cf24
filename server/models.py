"""The activity model: input validation, the stored form, and the JSON codec.

No I/O here. ``ActivityIn`` validates what a client sends; ``build_activity`` turns it into the
stored, public form (SPEC §2) minus the fields the write script owns (``seq``, ``id`` on upsert,
``version``, ``created_at``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from ulid import ULID

from .errors import BadRequest, Invalid

FEED_NAME = re.compile(r"[A-Za-z0-9_\-:.@]{1,128}")
#: An identifier (activity, actor, audience identity or role id, JWT ``sub``, role): 1–128
#: printable characters — no C0/C1 control character, no DEL (SPEC §3). Anchored, because
#: pydantic applies a ``pattern`` with search semantics: an unanchored one passes ``"carol\x1fp"``.
_ID_CHARS = r"[^\x00-\x1f\x7f-\x9f]{1,128}"
ID_TEXT = re.compile(f"^{_ID_CHARS}$")
#: A feed pattern of a ``feeds`` claim, ``public_feeds`` or ``api_key_feeds``: a feed name, or a
#: prefix of one ending in ``*`` (``booking:*``, ``*``).
FEED_PATTERN = re.compile(r"^(?:[A-Za-z0-9_\-:.@]{1,128}|[A-Za-z0-9_\-:.@]{0,127}\*)$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
_ULID_TEXT = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")

#: Server-owned fields: accepted on input (so a fetched activity can be sent back) but ignored,
#: except ``id`` (a client-chosen id) and ``version`` (an optimistic-lock precondition).
SERVER_OWNED = frozenset({"id", "feed", "seq", "created_at", "updated_at", "version"})
#: Names no activity may use as a custom field (SPEC §2).
RESERVED = frozenset(
    {
        "activity_id",
        "activity",
        "analytics",
        "extra_context",
        "is_read",
        "is_seen",
        "origin",
        "score",
        "site_id",
        "seq",
        "epoch",
    }
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

AudienceType = Literal["public", "everyone", "members", "identity", "role"]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=255)]
IdText = Annotated[str, StringConstraints(pattern=ID_TEXT.pattern)]
FeedName = Annotated[str, StringConstraints(pattern=f"^{FEED_NAME.pattern}$")]


_AUDIENCE_TOKEN = {"public": "p", "everyone": "e", "members": "m", "identity": "i", "role": "r"}
_AUDIENCE_KINDS: tuple[str, ...] = AudienceType.__args__  # type: ignore[attr-defined]
_WITH_ID = frozenset({"identity", "role"})


def is_id(value: object) -> bool:
    """True if ``value`` is a valid identifier (``ID_TEXT``)."""
    return isinstance(value, str) and ID_TEXT.fullmatch(value) is not None


def _field(text: str) -> str:
    return f"{len(text.encode())}:{text}"


def visibility(actor: str, verb: str, audience: Iterable[Mapping[str, Any]]) -> str:
    """An activity's visibility line, stored beside it for history reads filtered inside Redis
    (``lua/read.lua``, which builds the same line from a body in ``line_of_body``).

    Every string is length-prefixed (``<utf-8 byte length>:<text>``), so no id, verb or actor —
    whatever characters it holds — can end its field early and forge an audience entry: the
    line is ``actor verb`` then one token per entry: ``p``, ``e``, ``m``, ``i<id>``, ``r<id>``
    (``<id>`` length-prefixed too). Example: ``5:alice4:postmi3:bobr10:accounting``.
    """
    parts = [_field(actor), _field(verb)]
    for entry in audience:
        token = _AUDIENCE_TOKEN.get(entry["type"])
        if token is None:
            continue  # an entry type this version does not know admits nobody
        parts.append(token + _field(str(entry["id"])) if token in ("i", "r") else token)
    return "".join(parts)


def dumps(value: Any) -> bytes:
    """Encode to compact JSON bytes (the one encoder of the server)."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Decode JSON; malformed input raises ``BadRequest`` (400)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


def check_feed_name(feed: str) -> str:
    """Return ``feed`` if it is a valid feed name, else raise 422."""
    if not FEED_NAME.fullmatch(feed):
        raise Invalid(
            "invalid feed name",
            errors=[{"loc": "feed", "msg": "1-128 characters of A-Z a-z 0-9 _ - : . @", "type": "feed_name"}],
        )
    return feed


def format_time(dt: datetime) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-01-14T09:30:00.000Z``."""
    dt = dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)
    return dt.isoformat(timespec="milliseconds")[:-6] + "Z"  # "…+00:00" → "…Z"


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time (stored form ``…Z`` included) as an aware UTC datetime; ValueError if not one."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        dt = datetime.fromisoformat(value)
    else:
        raise ValueError(f"not a time: {value!r}")
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


def now() -> datetime:
    """The current time in UTC, truncated to milliseconds (the stored precision)."""
    dt = datetime.now(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def time_ms(dt: datetime) -> int:
    """Milliseconds since the epoch: the score of the feed's time index (integer arithmetic)."""
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _ONE_MS


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_NEXT_CHAR = dict(zip(_CROCKFORD, _CROCKFORD[1:], strict=False))
#: Maps each byte to a Crockford character by its low 5 bits: 16 random bytes → 16 uniform chars.
_RANDOM_CHARS = bytes.maketrans(bytes(range(256)), bytes(ord(_CROCKFORD[b & 31]) for b in range(256)))


class IdGenerator:
    """ULIDs whose timestamp is the activity time: id order is time order.

    Within one millisecond the ids this generator hands out increase (the previous id's random
    part + 1), so a batch written in one millisecond lists in the order it was written. Encoded
    here rather than with python-ulid, whose pure-Python base32 costs several microseconds an id
    (it still parses ids: ``ulid_ms``).
    """

    __slots__ = ("_ms", "_time_chars", "_random")

    def __init__(self) -> None:
        self._ms = -1
        self._time_chars = ""
        self._random = ""

    def __call__(self, ms: int) -> str:
        """A new id for an activity at ``ms`` milliseconds since the epoch."""
        if ms == self._ms and (following := _increment(self._random)) is not None:
            self._random = following
        else:
            if ms != self._ms:
                self._ms, self._time_chars = ms, _time_chars(ms)
            self._random = os.urandom(16).translate(_RANDOM_CHARS).decode()
        return self._time_chars + self._random


def _time_chars(ms: int) -> str:
    """The 10 timestamp characters of a ULID (48 bits, most significant first)."""
    return "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -5, -5))


def _increment(chars: str) -> str | None:
    """A base-32 string plus one (None when it is all ``Z``: no larger value of that length)."""
    for i in range(len(chars) - 1, -1, -1):
        following = _NEXT_CHAR.get(chars[i])
        if following is not None:
            return chars[:i] + following + "0" * (len(chars) - 1 - i)
    return None


def ulid_ms(value: str) -> int | None:
    """The millisecond timestamp inside a ULID string, or None if ``value`` is not a ULID."""
    if not _ULID_TEXT.fullmatch(value):
        return None
    return ULID.from_str(value).milliseconds


# ---------------------------------------------------------------------------------------------
# Audience


class AudienceEntry(BaseModel):
    """One audience entry; stored (and answered) in this object form."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: AudienceType
    id: IdText | None = None
    notify: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            kind, sep, ident = value.partition(":")
            return {"type": kind, "id": ident} if sep else {"type": kind}
        return value

    @model_validator(mode="after")
    def _needs_id(self) -> AudienceEntry:
        if self.type in ("identity", "role") and not self.id:
            raise ValueError(f"audience type {self.type!r} needs an id")
        if self.type not in ("identity", "role") and self.id is not None:
            raise ValueError(f"audience type {self.type!r} takes no id")
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The object form (an id exactly for identity/role) or the shorthand string the validator accepts."""
        schema = handler.resolve_ref_schema(handler(core))
        with_id = sorted(_WITH_ID)
        schema["if"] = {"properties": {"type": {"enum": with_id}}}
        schema["then"] = {"required": ["type", "id"], "properties": {"id": {"type": "string"}}}
        schema["else"] = {"properties": {"id": {"type": "null"}}}
        kinds = "|".join(k for k in _AUDIENCE_KINDS if k not in _WITH_ID)
        shorthand = {
            "type": "string",
            "pattern": f"^({kinds}|({'|'.join(with_id)}):{_ID_CHARS})$",
            "description": "Shorthand: `public`, `everyone`, `members`, `identity:<id>`, `role:<id>`",
        }
        return {"anyOf": [shorthand, schema]}

    def as_json(self) -> dict[str, Any]:
        """The stored form: ``notify`` only when true, ``id`` only when present."""
        out: dict[str, Any] = {"type": self.type}
        if self.id is not None:
            out["id"] = self.id
        if self.notify:
            out["notify"] = True
        return out


def parse_audience(value: Any) -> list[dict[str, Any]]:
    """Validate an audience list (shorthand or object entries) into its stored form."""
    try:
        entries = _AUDIENCE_LIST.validate_python(value)
    except ValidationError as exc:
        raise validation_error(exc, prefix="audience") from None
    return [entry.as_json() for entry in entries]


_AUDIENCE_LIST = TypeAdapter(Annotated[list[AudienceEntry], Field(max_length=100)])


# ---------------------------------------------------------------------------------------------
# Activity input


class ObjectRef(BaseModel):
    """``object`` / ``target`` in object form: an ``id`` plus anything the client adds."""

    model_config = ConfigDict(extra="allow")

    id: ShortText
    type: ShortText | None = None


class TargetRef(ObjectRef):
    """``target``: an entity and optionally a sub-entity (``sub_id``)."""

    sub_id: ShortText | None = None


class ActorRef(BaseModel):
    """``actor`` in object form."""

    model_config = ConfigDict(extra="allow")

    id: IdText
    name: Annotated[str, StringConstraints(max_length=255)] | None = None
    avatar: Annotated[str, StringConstraints(max_length=2048)] | None = None


class Attachment(BaseModel):
    """One attachment: a ``file`` (by id), a ``link`` (by url) or a ``video`` (id or url)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={  # what _has_ref checks
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": kind}}},
                    "then": {"anyOf": [{"required": [f], "properties": {f: {"type": "string"}}} for f in fields]},
                }
                for kind, fields in (("file", ("id",)), ("link", ("url",)), ("video", ("id", "url")))
            ]
        },
    )

    type: Literal["file", "link", "video"]
    id: ShortText | None = None
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None

    @model_validator(mode="after")
    def _has_ref(self) -> Attachment:
        if self.type == "file" and not self.id:
            raise ValueError("a file attachment needs an id")
        if self.type == "link" and not self.url:
            raise ValueError("a link attachment needs a url")
        if self.type == "video" and not (self.id or self.url):
            raise ValueError("a video attachment needs an id or a url")
        return self


class Change(BaseModel):
    """One entry of ``changes``: ``{"from": …, "to": …}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Any = Field(None, alias="from")
    to: Any = None


class ActivityIn(BaseModel):
    """An activity as a client writes it; unknown top-level fields are custom fields (any JSON value)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=lambda schema: _activity_schema_extra(schema))

    id: IdText | None = None
    verb: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,255}$")]
    object: ShortText | ObjectRef
    actor: IdText | ActorRef | None = None
    target: ShortText | TargetRef | None = None
    time: datetime | None = None
    foreign_id: ShortText | None = None
    audience: list[AudienceEntry] | None = Field(None, max_length=100)
    to: list[FeedName] | None = Field(None, max_length=100)
    text: str | None = None
    i18n_key: ShortText | None = None
    template: str | None = None
    template_data: dict[str, Any] | None = None
    emotion: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    icon: ShortText | None = None
    attachments: list[Attachment] | None = Field(None, max_length=100)
    changes: dict[str, Change] | None = None
    version: int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _strip_and_check_names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("an activity must be a JSON object")
        if not _RESERVED_INPUT.isdisjoint(value):
            reserved = ", ".join(sorted(_RESERVED_INPUT.intersection(value)))
            raise ValueError(f"reserved field names may not be used: {reserved}")
        for name in value:
            if not name or len(name) > 128 or "." in name or name[0] == "$":
                raise ValueError(f"invalid field name {name!r}: 1-128 characters, no '.' or leading '$'")
        if not _IGNORED_INPUT.isdisjoint(value):
            return {k: v for k, v in value.items() if k not in _IGNORED_INPUT}
        return value

    @field_validator("verb")
    @classmethod
    def _verb_bytes(cls, value: str) -> str:
        if len(value.encode()) > 255:
            raise ValueError("verb is longer than 255 bytes")
        return value

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)

    @field_validator("template")
    @classmethod
    def _template_syntax(cls, value: str | None) -> str | None:
        if value is not None:
            rest = _PLACEHOLDER.sub("", value)
            if "{{" in rest or "}}" in rest:
                raise ValueError("template placeholders must look like {{name}} or {{name.path}}")
        return value

    @model_validator(mode="after")
    def _template_data_needs_template(self) -> ActivityIn:
        if self.template_data is not None and self.template is None:
            raise ValueError("template_data given without template")
        return self


_IGNORED_INPUT = SERVER_OWNED - {"id", "version"}
_RESERVED_INPUT = RESERVED - SERVER_OWNED


#: The JSON schema of the field names the before-validator accepts (``propertyNames``).
FIELD_NAMES_SCHEMA: dict[str, Any] = {
    "pattern": "^[^.$][^.]{0,127}$",
    "not": {"enum": sorted(_RESERVED_INPUT)},
    "description": "1-128 characters, no '.', not starting with '$', not a reserved name",
}


def _activity_schema_extra(schema: dict[str, Any]) -> None:
    """What the before-validator checks, in the JSON schema: the names of custom fields, examples."""
    schema["propertyNames"] = FIELD_NAMES_SCHEMA
    schema["dependentRequired"] = {"template_data": ["template"]}
    schema["examples"] = [
        {"verb": "comment", "object": "f4d1"},
        {
            "verb": "booking.confirm",
            "object": {"id": "f4d1", "type": "booking"},
            "text": "Booking confirmed",
            "audience": ["members", "identity:alexandra", {"type": "role", "id": "accounting", "notify": True}],
            "foreign_id": "booking:f4d1:confirm",
        },
    ]


#: Input fields the stored body does not copy as given: the server sets or normalises them.
_REBUILT = SERVER_OWNED | {"actor", "time", "audience", "to"}


_UNION_TAGS = frozenset({"constrained-str", "str", "int", "ObjectRef", "TargetRef", "ActorRef"})


def _is_union_tag(part: str | int) -> bool:
    """pydantic puts the tried member of a union (``str``, ``ObjectRef``…) in error locations."""
    return isinstance(part, str) and (part in _UNION_TAGS or part.startswith(("function-", "dict[", "list[")))


def validation_error(exc: ValidationError, prefix: str = "") -> Invalid:
    """Turn a pydantic error into a 422 that lists each failing field."""
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p))
        if prefix:
            loc = f"{prefix}.{loc}" if loc else prefix
        msg = err["msg"].removeprefix("Value error, ")
        errors.append({"loc": loc, "msg": msg, "type": err["type"]})
    detail = "; ".join(f"{e['loc']}: {e['msg']}" if e["loc"] else e["msg"] for e in errors[:5])
    return Invalid(detail or "invalid activity", errors=errors)


def parse_activity(raw: Any, loc: str = "") -> ActivityIn:
    """Validate one activity from decoded JSON; raise 422 listing every bad field."""
    try:
        return ActivityIn.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, prefix=loc) from None


_WELL_KNOWN = frozenset(ActivityIn.model_fields)


def build_body(
    item: ActivityIn,
    source: Mapping[str, Any],
    *,
    feed: str,
    actor: dict[str, Any],
    audience: list[dict[str, Any]],
    time: str,
    updated_at: str,
) -> dict[str, Any]:
    """The stored activity without the fields the write script sets (seq, id, version, created_at).

    Validated fields are stored as the client gave them in ``source`` (the input ``item`` was
    validated from), in its order, after
    ``feed`` and the resolved ``actor``; ``time`` (UTC, milliseconds), ``audience`` (object form) and
    ``to`` (without duplicates) are normalised, and ``updated_at`` comes last.
    """
    body: dict[str, Any] = {"feed": feed, "actor": actor}
    for name, value in source.items():
        if name not in _REBUILT and (value is not None or name not in _WELL_KNOWN):
            body[name] = value  # a well-known field given as null is absent; a custom null is kept
    body["time"] = time
    body["audience"] = audience
    if item.to:
        body["to"] = list(dict.fromkeys(item.to))
    body["updated_at"] = updated_at
    return body


# ---------------------------------------------------------------------------------------------
# Partial updates


MAX_PATCH_KEYS = 25


class PatchIn(BaseModel):
    """``{"set": {path: value}, "unset": [path]}`` with dotted paths."""

    model_config = ConfigDict(extra="forbid")

    set: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PATCH_KEYS)
    unset: list[str] = Field(default_factory=list, max_length=MAX_PATCH_KEYS)
    version: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check_paths(self) -> PatchIn:
        if not self.set and not self.unset:
            raise ValueError("give at least one path in 'set' or 'unset'")
        for path in [*self.set, *self.unset]:
            parts = path.split(".")
            if not path or any(not p for p in parts):
                raise ValueError(f"invalid path {path!r}")
            if parts[0] in RESERVED or parts[0] in SERVER_OWNED:
                raise ValueError(f"{path!r}: {parts[0]!r} is reserved or owned by the server")
        for a in self.set:
            for b in self.unset:
                if a == b or a.startswith(b + ".") or b.startswith(a + "."):
                    raise ValueError(f"set {a!r} and unset {b!r} touch the same field")
        return self


def parse_patch(raw: Any) -> PatchIn:
    """Validate a partial update; 422 listing each problem."""
    try:
        return PatchIn.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def apply_patch(doc: dict[str, Any], patch: PatchIn) -> dict[str, Any]:
    """``doc`` with ``patch`` applied (in place). Parents must exist; unset paths must exist."""
    for path in patch.unset:
        *parents, last = path.split(".")
        parent = _walk(doc, parents, path)
        if last not in parent:
            raise Invalid(
                f"unset {path!r}: no such field",
                errors=[{"loc": f"unset.{path}", "msg": "no such field", "type": "missing"}],
            )
        del parent[last]
    for path, value in patch.set.items():
        *parents, last = path.split(".")
        _walk(doc, parents, path)[last] = value
    return doc


def _walk(doc: dict[str, Any], parents: list[str], path: str) -> dict[str, Any]:
    node: Any = doc
    for i, key in enumerate(parents):
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            at = ".".join(parents[: i + 1])
            raise Invalid(
                f"{path!r}: {at!r} is not an existing object",
                errors=[{"loc": path, "msg": f"parent {at!r} must be an existing object", "type": "missing"}],
            )
    return node
