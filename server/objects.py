"""Users and collections (SPEC §12): small stored objects that enriched reads put in place of
their references, ``SU:<user id>`` and ``SO:<collection>:<object id>``.

A user is ``{id, data, created_at, updated_at}``; a collection object is ``{id, collection,
foreign_id ("<collection>:<id>"), data, user_id?, created_at, updated_at}``. Each is one key in a
slot of its own (``keys.Keys.user_object`` / ``collection_object``).

Rights: any authenticated caller reads them; a user object is written by that user or an admin;
a collection object is created by any authenticated caller (its ``user_id`` is the caller unless
an admin sets it) and changed or deleted by its user or an admin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .acl import Principal
from .backends.base import Pipeline
from .calls import Calls
from .errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from .keys import Keys
from .models import dumps, format_time, now

_MAX_DATA = 10240
_MAX_BATCH = 1000


def _ident(value: Any, loc: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not value.isprintable() or "{" in value:
        raise Invalid(f"{loc} must be 1..128 printable characters", errors=[{"loc": loc, "msg": "bad id"}])
    return value


def _data(value: Any) -> dict[str, Any]:
    value = {} if value is None else value
    if not isinstance(value, dict) or len(dumps(value)) > _MAX_DATA:
        raise Invalid("data must be an object of at most 10 KB", errors=[{"loc": "data", "msg": "object"}])
    return value


class ObjectStore:
    """Users and collection objects in Redis, over the command pipeline."""

    def __init__(self, pipeline: Pipeline, keys: Keys, *, timeout: float) -> None:
        self.calls = Calls(pipeline, timeout)
        self.keys = keys

    async def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The objects at ``keys`` (None where missing); one GET per key (each its own slot)."""
        found = await self.calls.many([(k, "GET", k) for k in keys])
        return [orjson.loads(v) if v is not None else None for v in found]

    async def put(self, key: str, value: dict[str, Any], *, only_new: bool = False) -> bool:
        """Store ``value``; with ``only_new`` only if absent (False when it existed)."""
        extra = ("NX",) if only_new else ()
        return await self.calls.cmd(key, "SET", key, dumps(value), *extra) is not None

    async def delete(self, key: str) -> bool:
        """Remove; False if it did not exist."""
        return bool(await self.calls.cmd(key, "DEL", key))


class ObjectService:
    """User and collection use cases, and the enrichment of references."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.keys = store.keys

    @staticmethod
    def _authed(principal: Principal) -> str:
        if principal.sub is None:
            raise Unauthorized("users and collections need an authenticated caller")
        return principal.sub

    # -- users ---------------------------------------------------------------------------------

    async def add_user(
        self, principal: Principal, raw: Any, *, get_or_create: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """Create a user ``{id, data}``; (user, created). An existing id is 409 unless ``get_or_create``."""
        sub = self._authed(principal)
        user_id = _ident(raw.get("id") if isinstance(raw, dict) else None, "id")
        if user_id != sub and not principal.admin:
            raise Forbidden("only admins create other users")
        stamp = format_time(now())
        user = {"id": user_id, "data": _data(raw.get("data")), "created_at": stamp, "updated_at": stamp}
        key = self.keys.user_object(user_id)
        if await self.store.put(key, user, only_new=True):
            return user, True
        if not get_or_create:
            raise Conflict(f"user {user_id} already exists")
        [existing] = await self.store.get_many([key])
        return (existing or user), False

    async def get_user(self, principal: Principal, user_id: str) -> dict[str, Any]:
        """One user (404 when missing)."""
        self._authed(principal)
        [user] = await self.store.get_many([self.keys.user_object(_ident(user_id, "id"))])
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user

    async def update_user(self, principal: Principal, user_id: str, raw: Any) -> dict[str, Any]:
        """Replace a user's ``data`` (that user or an admin)."""
        sub = self._authed(principal)
        if user_id != sub and not principal.admin:
            raise Forbidden("only admins change other users")
        old = await self.get_user(principal, user_id)
        user = {
            **old,
            "data": _data(raw.get("data") if isinstance(raw, dict) else None),
            "updated_at": format_time(now()),
        }
        await self.store.put(self.keys.user_object(user_id), user)
        return user

    async def delete_user(self, principal: Principal, user_id: str) -> None:
        """Delete a user (that user or an admin); 404 when missing."""
        sub = self._authed(principal)
        if user_id != sub and not principal.admin:
            raise Forbidden("only admins delete other users")
        if not await self.store.delete(self.keys.user_object(_ident(user_id, "id"))):
            raise NotFound(f"user {user_id} not found")

    # -- collections ---------------------------------------------------------------------------

    async def add_object(
        self, principal: Principal, collection: str, raw: Any, *, upsert: bool = False
    ) -> dict[str, Any]:
        """Create (or with ``upsert`` replace) an object ``{id?, data, user_id?}`` of ``collection``."""
        sub = self._authed(principal)
        collection = _ident(collection, "collection")
        if not isinstance(raw, dict):
            raise Invalid("an object is required", errors=[{"loc": "", "msg": "object"}])
        object_id = _ident(raw["id"], "id") if raw.get("id") else _new_id()
        user_id = raw.get("user_id") or sub
        if user_id != sub and not principal.admin:
            raise Forbidden("only admins create objects for other users")
        key = self.keys.collection_object(collection, object_id)
        stamp = format_time(now())
        if upsert:
            [old] = await self.store.get_many([key])
            if old is not None and old.get("user_id") not in (sub, None) and not principal.admin:
                raise Forbidden("only its user or an admin may change an object")
        else:
            old = None
        obj = {
            "id": object_id,
            "collection": collection,
            "foreign_id": f"{collection}:{object_id}",
            "data": _data(raw.get("data")),
            "user_id": user_id,
            "created_at": old["created_at"] if old else stamp,
            "updated_at": stamp,
        }
        if not await self.store.put(key, obj, only_new=not upsert):
            raise Conflict(f"object {collection}:{object_id} already exists")
        return obj

    async def get_object(self, principal: Principal, collection: str, object_id: str) -> dict[str, Any]:
        """One collection object (404 when missing)."""
        self._authed(principal)
        [obj] = await self.store.get_many([self.keys.collection_object(collection, object_id)])
        if obj is None:
            raise NotFound(f"object {collection}:{object_id} not found")
        return obj

    async def select(self, principal: Principal, refs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """The objects of (collection, id) pairs that exist."""
        self._authed(principal)
        if len(refs) > _MAX_BATCH:
            raise Invalid(f"at most {_MAX_BATCH} objects", errors=[{"loc": "ids", "msg": "too many"}])
        found = await self.store.get_many([self.keys.collection_object(c, i) for c, i in refs])
        return [o for o in found if o is not None]

    async def update_object(self, principal: Principal, collection: str, object_id: str, raw: Any) -> dict[str, Any]:
        """Replace an object's ``data`` (its user or an admin)."""
        old = await self.get_object(principal, collection, object_id)
        if old.get("user_id") != principal.sub and not principal.admin:
            raise Forbidden("only its user or an admin may change an object")
        obj = {
            **old,
            "data": _data(raw.get("data") if isinstance(raw, dict) else None),
            "updated_at": format_time(now()),
        }
        await self.store.put(self.keys.collection_object(collection, object_id), obj)
        return obj

    async def delete_object(self, principal: Principal, collection: str, object_id: str) -> None:
        """Delete an object (its user or an admin)."""
        old = await self.get_object(principal, collection, object_id)
        if old.get("user_id") != principal.sub and not principal.admin:
            raise Forbidden("only its user or an admin may delete an object")
        await self.store.delete(self.keys.collection_object(collection, object_id))

    # -- enrichment ----------------------------------------------------------------------------

    async def enrich(self, docs: list[dict[str, Any]]) -> None:
        """Replace ``SU:``/``SO:`` references in ``actor``, ``object``, ``target`` and other top-level
        fields of ``docs`` by the stored objects (references to missing objects stay as they are)."""
        refs: dict[str, str] = {}
        for doc in docs:
            for value in doc.values():
                ref = _reference(value)
                if ref is not None and ref not in refs:
                    key = self._key_of(ref)
                    if key is not None:
                        refs[ref] = key
        if not refs:
            return
        found = dict(zip(refs, await self.store.get_many(list(refs.values())), strict=True))
        for doc in docs:
            for field, value in list(doc.items()):
                ref = _reference(value)
                if ref is not None and found.get(ref) is not None:
                    doc[field] = found[ref]

    def _key_of(self, ref: str) -> str | None:
        if ref.startswith("SU:") and len(ref) > 3 and "{" not in ref:
            return self.keys.user_object(ref[3:])
        if ref.startswith("SO:"):
            collection, _, object_id = ref[3:].partition(":")
            if collection and object_id and "{" not in ref:
                return self.keys.collection_object(collection, object_id)
        return None


def _reference(value: Any) -> str | None:
    """``"SU:x"``, or an object whose only field is ``id: "SU:x"`` (how actors are stored)."""
    if isinstance(value, dict) and len(value) <= 3 and isinstance(value.get("id"), str):
        value = value["id"]
    if isinstance(value, str) and value[:3] in ("SU:", "SO:"):
        return value
    return None


def _new_id() -> str:
    import uuid

    return str(uuid.uuid4())
