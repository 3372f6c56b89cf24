"""GetStream authentication (SPEC §11), without I/O: ``api_key`` first, then the raw HS256 JWT.

Two kinds of token, both signed with the app secret:

- **server tokens** ``{resource, action, feed_id}`` (``feed_id`` is ``slug+id`` without the colon,
  or ``*``): the backend's. On the feeds they cover they act as a feed admin (GetStream's server
  sees everything); ``action: read`` only reads.
- **user tokens** ``{user_id}``: GetStream's default client policy — the user's own feeds
  (``<slug>:<user_id>``) only, as its own actor only, ``to`` only other users' ``notification:``
  feeds; reads are filtered by the audience rule like any authenticated caller's.

A ``Caller`` checks a call against its scope and builds the native ``Principal`` the service
needs for exactly the feeds the call touches. These tokens are accepted only on the GetStream
surface and its Bayeux endpoint.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from ...acl import ALL_RIGHTS, Principal, Right, Rights
from .shapes import api_key_error, not_allowed, signature_error

#: ``sub`` of the principal of a server token (it is nobody's identity).
SERVER_SUB = "getstream:server"
#: Rights of a read-only server token: read, and see everything (admin visibility), never write.
_READ_ALL: Rights = Right.READ | Right.MEMBER | Right.ADMIN
_USER_OWN: Rights = Right.READ | Right.WRITE | Right.MEMBER
_ACTIONS = ("read", "write", "delete")
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified GetStream token."""

    resource: str | None = None
    action: str | None = None
    feed_id: str | None = None
    user_id: str | None = None

    @property
    def is_user(self) -> bool:
        """True for a user token (no ``resource``: GetStream's client-side token)."""
        return self.resource is None and self.user_id is not None

    def covers_feed(self, feed: str) -> bool:
        """Whether the token's feed scope includes ``feed`` (``slug:id``)."""
        if self.is_user:
            return feed.partition(":")[2] == self.user_id
        return self.feed_id == "*" or self.feed_id == feed.replace(":", "", 1)

    def allow(self, resource: str, action: str, feeds: Iterable[str] = ()) -> None:
        """403 ``NotAllowedException`` unless the token covers ``resource``/``action`` on ``feeds``.

        User tokens may act on their own feeds (``resource`` ``feed``/``feed_targets``), and read
        activities by id (filtered by audience afterwards); nothing else.
        """
        if self.is_user:
            if resource not in ("feed", "feed_targets", "activities") or (
                resource == "activities" and action != "read"
            ):
                raise not_allowed(f"user tokens may not use {resource}/{action}")
        else:
            if self.resource not in (resource, "*"):
                raise not_allowed(f"token resource {self.resource!r} does not allow {resource}")
            if self.action not in (action, "*") and not (action == "read" and self.action in _ACTIONS):
                raise not_allowed(f"token action {self.action!r} does not allow {action}")
        for feed in feeds:
            if not self.covers_feed(feed):
                raise not_allowed(f"token does not give access to feed {feed}")

    def check_actor(self, actor: Any) -> None:
        """User tokens write only as themselves (``"<id>"`` or ``"SU:<id>"``)."""
        if self.is_user and actor not in (self.user_id, f"SU:{self.user_id}"):
            raise not_allowed(f"a user token may only write activities with actor {self.user_id!r}")

    def check_targets(self, targets: Iterable[str]) -> None:
        """User tokens may ``to``-target their own feeds and other users' ``notification:`` feeds only."""
        if not self.is_user:
            return
        for target in targets:
            if not self.covers_feed(target) and not target.startswith("notification:"):
                raise not_allowed(f"user tokens may only target notification feeds, not {target}")

    def principal(self, feeds: Iterable[str], *, sub: str | None = None, targets: Iterable[str] = ()) -> Principal:
        """The native principal for a call on ``feeds`` (and ``to`` copies into ``targets``).

        ``sub`` overrides the user's identity for writes whose actor is the user's ``SU:<id>``
        reference (the native actor rule compares the actor with ``sub``).
        """
        grants: list[tuple[str, Rights]] = []
        if self.is_user:
            grants += [(f, _USER_OWN) for f in feeds if self.covers_feed(f)]
            grants += [(t, Right.WRITE) for t in targets]
            return Principal(sub=sub or self.user_id, feeds=tuple(grants), kind="getstream")
        rights = _READ_ALL if self.action == "read" else ALL_RIGHTS
        grants += [(f, rights) for f in feeds]
        grants += [(t, ALL_RIGHTS) for t in targets]
        return Principal(sub=SERVER_SUB, feeds=tuple(grants), kind="getstream")


class GetStreamAuth:
    """The app's key and secret; turns request credentials into a ``Caller``."""

    def __init__(self, api_key: str, api_secret: str) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        # token → (caller, exp). Only the exact string that verified hits (the clients send the same
        # token for every call of a feed); expiry is re-checked on each use; the oldest goes first.
        self._verified: dict[str, tuple[Caller, float | None]] = {}

    def check_key(self, api_key: str | None) -> None:
        """401 ``ApiKeyException`` (code 2) for a missing or unknown key: checked before the token."""
        if not api_key or not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            raise api_key_error("api_key not found or invalid")

    def caller(self, api_key: str | None, token: str | None) -> Caller:
        """Verify the key, then the token (HS256 with the secret; ``exp`` checked when present)."""
        self.check_key(api_key)
        if not token:
            raise signature_error("missing Authorization token")
        token = token.removeprefix("Bearer ").strip()
        hit = self._verified.get(token)
        if hit is not None:
            if hit[1] is None or hit[1] > time.time():
                return hit[0]
            del self._verified[token]
        try:
            claims = jwt.decode(
                token,
                self.api_secret,
                algorithms=["HS256"],
                options={"verify_aud": False, "verify_iss": False, "require": []},
            )
        except jwt.PyJWTError as exc:
            raise signature_error(f"signature is invalid: {exc}") from None
        caller = caller_of(claims)
        exp = claims.get("exp")
        if len(self._verified) >= _CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (caller, float(exp) if isinstance(exp, int | float) else None)
        return caller


def caller_of(claims: Mapping[str, Any]) -> Caller:
    """The scope of verified ``claims`` (401 when they carry none we understand)."""

    def text(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and 0 < len(value) <= 256 else None

    resource, user_id = text("resource"), text("user_id")
    if resource is None and user_id is None:
        raise signature_error("the token carries neither resource/action/feed_id nor user_id")
    return Caller(resource=resource, action=text("action"), feed_id=text("feed_id"), user_id=user_id)


__all__ = ["SERVER_SUB", "Caller", "GetStreamAuth", "caller_of"]
