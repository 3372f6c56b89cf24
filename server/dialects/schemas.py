"""Pydantic models of the seed dialects' requests and responses: the source of their OpenAPI paths.

The dialects validate with their ``FieldTable`` (which also translates errors into their field
names); these models describe the same fields, and ``tests/test_openapi.py`` checks that each
model names exactly the fields its table maps, so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from ..models import FIELD_NAMES_SCHEMA

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
#: Characters of an id that becomes part of a feed name.
FeedPart = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-:.@]{1,116}$")]

# ---------------------------------------------------------------------------------------------
# Wink: /api/activity-stream

WinkAcl = Literal["EVERYONE", "PUBLIC", "MEMBERS", "PRIVATE", "AUTHENTICATED", "OWNER", "ADMIN"]


class WinkUser(BaseModel):
    """The author of a Wink entry (enriches the actor; must be the caller unless a feed admin)."""

    model_config = ConfigDict(extra="forbid")

    userIdentifier: NonEmpty
    name: str | None = None
    profilePictureUrl: str | None = None


class WinkEntryIn(BaseModel):
    """A Wink activity stream entry as sent; lands in feed ``entity:<entityIdentifier>``.

    One of ``comment`` or ``i18nKey`` is required; the verb is ``i18nKey`` when given, else ``comment``.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["comment"], "properties": {"comment": {"type": "string"}}},
                {"required": ["i18nKey"], "properties": {"i18nKey": {"type": "string"}}},
            ],
            "examples": [{"acl": "MEMBERS", "entityIdentifier": "booking-f4d1", "comment": "Guest arrives at 3 pm"}],
        },
    )

    acl: WinkAcl
    entityIdentifier: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-:.@]{1,121}$")]
    eventDate: datetime | None = None
    emotion: NonEmpty | None = None
    comment: NonEmpty | None = None
    i18nKey: NonEmpty | None = None
    attachmentId: NonEmpty | None = None
    user: WinkUser | None = None
    id: str | None = Field(None, description="Ignored (server-owned); a fetched entry may be sent back")
    createdDate: str | None = Field(None, description="Ignored (server-owned)")
    lastUpdate: str | None = Field(None, description="Ignored (server-owned)")
    version: int | None = Field(None, description="Ignored on create")


class WinkEntryUpdate(WinkEntryIn):
    """A Wink entry replacing a stored one: ``version`` (the version read) is the optimistic lock."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["comment"], "properties": {"comment": {"type": "string"}}},
                {"required": ["i18nKey"], "properties": {"i18nKey": {"type": "string"}}},
            ],
            "examples": [
                {"acl": "MEMBERS", "entityIdentifier": "booking-f4d1", "comment": "Guest arrives at 4 pm", "version": 1}
            ],
        },
    )

    version: int = Field(ge=1, description="The version read (stale → 412)")


class WinkEntry(BaseModel):
    """A stored Wink entry."""

    model_config = ConfigDict(extra="forbid")

    id: str
    createdDate: str | None
    lastUpdate: str | None
    version: int | None
    acl: Literal["EVERYONE", "PUBLIC", "MEMBERS", "PRIVATE"]
    entityIdentifier: str
    eventDate: str | None = None
    emotion: str | None = None
    comment: str | None = None
    i18nKey: str | None = None
    attachmentId: str | None = None
    user: WinkUser | None = None


class WinkHeaders(BaseModel):
    """Wink's version header (absent: 2.0)."""

    wink_version: Literal["2.0", "2.0.0"] | None = Field(None, alias="Wink-Version")


class WinkEntryPath(BaseModel):
    """The entry of a ``PUT``."""

    entry_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class WinkEntityPath(BaseModel):
    """The entity of a list."""

    entity: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-:.@]{1,121}$")]


# ---------------------------------------------------------------------------------------------
# Velt: /v2/activities/*

VeltFeature = Literal["comment", "reaction", "recorder", "crdt", "custom"]
VeltOrder = Literal["asc", "desc"]


class VeltUser(BaseModel):
    """Velt's ``User``: ``userId`` becomes the actor id, ``photoUrl`` its avatar; the rest is kept."""

    model_config = ConfigDict(extra="allow")

    userId: NonEmpty
    name: str | None = None
    email: str | None = None
    photoUrl: str | None = None


class VeltActivityIn(BaseModel):
    """A Velt activity record as added (``targetEntityId`` is required when ``featureType`` is custom)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "dependentRequired": {
                "displayMessageTemplateData": ["displayMessageTemplate"],
                "targetSubEntityId": ["targetEntityId"],
            },
            "if": {"properties": {"featureType": {"const": "custom"}}},
            "then": {"required": ["targetEntityId"]},
        },
    )

    id: NonEmpty | None = None
    featureType: VeltFeature
    actionType: NonEmpty
    actionUser: VeltUser
    targetEntityId: NonEmpty | None = None
    targetSubEntityId: NonEmpty | None = None
    changes: dict[str, Any] | None = None
    entityData: Any = None
    entityTargetData: Any = None
    displayMessageTemplate: NonEmpty | None = None
    displayMessageTemplateData: dict[str, Any] | None = None
    actionIcon: NonEmpty | None = None
    isActivityResolverUsed: bool | None = None


class VeltActivity(BaseModel):
    """A Velt activity record as ``/v2/activities/get`` returns it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    featureType: VeltFeature
    actionType: str
    actionUser: dict[str, Any]
    targetEntityId: str | None = None
    targetSubEntityId: str | None = None
    changes: dict[str, Any] | None = None
    entityData: Any = None
    entityTargetData: Any = None
    displayMessageTemplate: str | None = None
    displayMessageTemplateData: dict[str, Any] | None = None
    actionIcon: str | None = None
    isActivityResolverUsed: bool | None = None
    metadata: dict[str, str]
    timestamp: int = Field(description="Milliseconds since the epoch")


class VeltActivityChange(BaseModel):
    """What ``/v2/activities/update`` may change of one activity (at least one field besides ``id``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 2})

    id: NonEmpty
    changes: dict[str, Any] | None = None
    entityData: Any = None
    entityTargetData: Any = None
    displayMessageTemplate: NonEmpty | None = None
    displayMessageTemplateData: dict[str, Any] | None = None
    actionIcon: NonEmpty | None = None


class _VeltDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organizationId: FeedPart
    documentId: FeedPart = Field(description="Required: activities are stored per document")


@cache
def velt_models(max_batch: int) -> dict[str, type[BaseModel]]:
    """The request bodies of the four Velt calls (``{"data": {...}}``), with the configured batch limit."""
    add = create_model(
        "VeltAddData",
        __base__=_VeltDocument,
        activities=(list[VeltActivityIn], Field(min_length=1, max_length=max_batch)),
    )
    get = create_model(
        "VeltGetData",
        __base__=_VeltDocument,
        featureTypes=(list[VeltFeature] | None, None),
        actionTypes=(list[NonEmpty] | None, None),
        activityIds=(list[NonEmpty] | None, Field(None, max_length=max_batch)),
        userId=(NonEmpty | None, None),
        targetEntityId=(NonEmpty | None, None),
        order=(VeltOrder, "desc"),
        pageSize=(int, Field(1000, ge=1, description="At most 1000 are returned")),
        pageToken=(NonEmpty | None, None),
    )
    update = create_model(
        "VeltUpdateData",
        __base__=_VeltDocument,
        activities=(list[VeltActivityChange], Field(min_length=1, max_length=max_batch)),
    )
    delete = create_model(
        "VeltDeleteData",
        __base__=_VeltDocument,
        activityIds=(list[NonEmpty] | None, Field(None, max_length=max_batch)),
        targetEntityId=(NonEmpty | None, None),
    )
    out: dict[str, type[BaseModel]] = {}
    for name, data in (("add", add), ("get", get), ("update", update), ("delete", delete)):
        out[name] = create_model(f"Velt{name.title()}Request", __config__=ConfigDict(extra="forbid"), data=(data, ...))
    return out


class VeltOutcome(BaseModel):
    """The outcome of one activity of an update or delete."""

    success: bool
    message: str


class _VeltResultBase(BaseModel):
    status: Literal["success"]
    message: str


class VeltAddResult(_VeltResultBase):
    """``result`` of an add."""

    data: VeltOutcome


class VeltGetResult(_VeltResultBase):
    """``result`` of a get; ``pageToken`` continues the listing."""

    data: list[VeltActivity]
    pageToken: str | None = None


class VeltOutcomesResult(_VeltResultBase):
    """``result`` of an update or delete: an outcome per activity id."""

    data: dict[str, VeltOutcome]


class VeltAddResponse(BaseModel):
    """Velt's success body of an add."""

    result: VeltAddResult


class VeltGetResponse(BaseModel):
    """Velt's success body of a get."""

    result: VeltGetResult


class VeltOutcomesResponse(BaseModel):
    """Velt's success body of an update or delete."""

    result: VeltOutcomesResult


class VeltErrorBody(BaseModel):
    """``error``: a message and a canonical status (INVALID_ARGUMENT, UNAUTHENTICATED, …)."""

    message: str
    status: str


class VeltError(BaseModel):
    """Velt's failure body (never an RFC 9457 problem)."""

    error: VeltErrorBody


class VeltHeaders(BaseModel):
    """Velt's credentials: ``x-velt-auth-token`` carries one of this server's JWTs or API keys."""

    x_velt_auth_token: str | None = Field(
        None, alias="x-velt-auth-token", description="A JWT or API key of this server (else Authorization/X-API-Key)"
    )
    x_velt_api_key: str | None = Field(None, alias="x-velt-api-key", description="Accepted and ignored")


# ---------------------------------------------------------------------------------------------
# ActivityEntry: /v1/activity-entries


class EntryIdentity(BaseModel):
    """An Identity object as the actor."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type_: Literal["Identity"] | None = Field(None, alias="@type")
    id: NonEmpty
    name: str | None = None
    avatar: str | None = None


class EntryAttachment(BaseModel):
    """An attachment object (a link's ``id`` is its url)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type_: Literal["file", "link", "video"] = Field("file", alias="@type")
    id: NonEmpty | None = None
    url: NonEmpty | None = None


class EntryTarget(BaseModel):
    """An ActivityTarget: who may see the entry (``targetId`` only for Identity, and required there)."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "if": {"properties": {"@type": {"const": "Identity"}}},
            "then": {"required": ["targetId"], "properties": {"targetId": {"type": "string"}}},
            "else": {"properties": {"targetId": {"type": "null"}}},
        },
    )

    type_: Literal["Identity", "Everyone", "Members", "Public"] = Field("Identity", alias="@type")
    targetId: NonEmpty | None = None
    notify: bool = False


class ActivityEntryIn(BaseModel):
    """An ActivityEntry; lands in feed ``<objectType>:<objectId>``. Other fields are kept as custom fields."""

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        json_schema_extra={
            "propertyNames": FIELD_NAMES_SCHEMA,
            "examples": [
                {
                    "@type": "commented",
                    "objectId": "f4d1",
                    "objectType": "case",
                    "targets": [{"@type": "Identity", "targetId": "user-7", "notify": True}],
                }
            ],
        },
    )

    type_: NonEmpty = Field(alias="@type", description="The verb")
    actor: NonEmpty | EntryIdentity | None = None
    attachments: list[NonEmpty | EntryAttachment] | None = None
    objectId: NonEmpty
    objectType: NonEmpty
    publishedAt: datetime | None = None
    targets: list[EntryTarget] | None = None


class EntryCreated(BaseModel):
    """The id of the new activity."""

    id: str
