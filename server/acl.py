"""Principals, rights and the visibility rule (SPEC §3). Pure functions, no I/O.

The same ``Viewer.can_see`` decides live pushes, history reads, resume replays and single reads,
so a hidden activity looks exactly like a missing one everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .models import FEED_PATTERN

#: A set of rights on a feed, as bits of ``Right`` (plain ints: rights are combined on every
#: request, and ``enum.IntFlag`` arithmetic builds a new member per operation).
Rights = int


class Right:
    """Rights on a feed (bit values). ``MEMBER`` implies ``READ``; ``ADMIN`` implies everything."""

    NONE: Rights = 0
    READ: Rights = 1
    WRITE: Rights = 2
    MEMBER: Rights = 4
    ADMIN: Rights = 8

    @staticmethod
    def name(rights: Rights) -> str:
        """``"read|write"`` for the bits set in ``rights``."""
        return "|".join(n for n, bit in (("read", 1), ("write", 2), ("member", 4), ("admin", 8)) if rights & bit)


ALL_RIGHTS = Right.READ | Right.WRITE | Right.MEMBER | Right.ADMIN
_BY_NAME = {
    "read": Right.READ,
    "write": Right.WRITE,
    "member": Right.MEMBER | Right.READ,
    "admin": ALL_RIGHTS,
}


def parse_rights(names: Iterable[str]) -> Rights:
    """``["member", "write"]`` → ``READ|WRITE|MEMBER``; unknown names raise ``ValueError``."""
    rights = Right.NONE
    for name in names:
        try:
            rights |= _BY_NAME[name]
        except KeyError:
            raise ValueError(f"unknown right {name!r} (read, write, member, admin)") from None
    return rights


def pattern_matches(pattern: str, feed: str) -> bool:
    """A feed pattern is an exact name, or a prefix ending in ``*`` (``booking:*``, ``*``)."""
    if pattern.endswith("*"):
        return feed.startswith(pattern[:-1])
    return pattern == feed


def check_feed_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a feed name or a prefix ending in ``*``; else ``ValueError``."""
    if not isinstance(pattern, str) or FEED_PATTERN.fullmatch(pattern) is None:
        raise ValueError(f"invalid feed pattern {pattern!r} (a feed name, or a prefix of one ending in '*')")
    return pattern


def parse_feed_rights(claim: Mapping[str, Any]) -> tuple[tuple[str, Rights], ...]:
    """The ``feeds`` claim ``{pattern: [rights]}`` as a tuple of (pattern, Right)."""
    out = []
    for pattern, names in claim.items():
        if not isinstance(pattern, str) or not isinstance(names, list | tuple):
            raise ValueError("feeds claim must map feed patterns to lists of rights")
        check_feed_pattern(pattern)
        out.append((pattern, parse_rights(names)))
    return tuple(out)


def notification_feed(sub: str) -> str:
    """The notification feed of identity ``sub``."""
    return f"notifications:{sub}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. ``sub is None`` means anonymous."""

    sub: str | None = None
    name: str | None = None
    picture: str | None = None
    roles: frozenset[str] = frozenset()
    admin: bool = False
    feeds: tuple[tuple[str, Rights], ...] = ()
    kind: str = "anonymous"  # "jwt", "api_key" or "anonymous"
    expires_at: float | None = None
    public_feeds: tuple[str, ...] = field(default=(), compare=False)

    @property
    def authenticated(self) -> bool:
        """True for JWT and API-key callers."""
        return self.sub is not None

    def rights(self, feed: str) -> Rights:
        """Every right this principal holds on ``feed``."""
        if self.admin:
            return ALL_RIGHTS
        rights = Right.NONE
        for pattern, granted in self.feeds:
            if pattern_matches(pattern, feed):
                rights |= granted
        if self.sub is not None and feed == notification_feed(self.sub):
            rights |= Right.READ | Right.MEMBER
        if any(pattern_matches(p, feed) for p in self.public_feeds):
            rights |= Right.READ
        return rights

    def viewer(self, feed: str) -> Viewer:
        """The visibility test of this principal on ``feed`` (computed once per read/subscription).

        The owner of a notification feed sees everything in it, like a feed admin (whatever the
        copied activities' audiences say), without gaining the right to change it.
        """
        rights = self.rights(feed)
        owner = self.sub is not None and feed == notification_feed(self.sub)
        return Viewer(
            sub=self.sub,
            roles=self.roles,
            admin=owner or bool(rights & Right.ADMIN),
            member=bool(rights & Right.MEMBER),
        )

    def actor(self) -> dict[str, Any]:
        """The actor object of this principal, enriched from the token's name/picture."""
        actor: dict[str, Any] = {"id": self.sub}
        if self.name:
            actor["name"] = self.name
        if self.picture:
            actor["avatar"] = self.picture
        return actor


@dataclass(frozen=True, slots=True)
class Viewer:
    """A principal's standing on one feed: enough to decide visibility without I/O.

    ``admin`` means "sees everything here": a feed admin, or the owner of a notification feed.
    """

    sub: str | None
    roles: frozenset[str]
    admin: bool
    member: bool

    def can_see(self, activity: Mapping[str, Any]) -> bool:
        """SPEC §3: feed admin, the actor, or any audience entry that admits this viewer."""
        return self.admin or admits(self, actor_id(activity), activity.get("audience") or ())


def actor_id(activity: Mapping[str, Any]) -> str | None:
    """The id of an activity's actor (stored activities always carry the object form)."""
    actor = activity.get("actor")
    return actor.get("id") if isinstance(actor, dict) else actor


def admits(viewer: Viewer, actor: str | None, audience: Iterable[Mapping[str, Any]]) -> bool:
    """True if ``viewer`` is the actor or any audience entry admits it (admin is checked by callers)."""
    sub = viewer.sub
    if sub is not None and actor == sub:
        return True
    for entry in audience:
        kind = entry.get("type")
        if kind == "public":
            return True
        if sub is None:
            continue
        if (
            kind == "everyone"
            or (kind == "members" and viewer.member)
            or (kind == "identity" and entry.get("id") == sub)
            or (kind == "role" and entry.get("id") in viewer.roles)
        ):
            return True
    return False
