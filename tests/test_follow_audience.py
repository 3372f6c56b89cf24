"""Audience through follows (SPEC §12), property-tested: a follow copy is visible to exactly the
readers who could see the original in its origin feed, in reads, single gets and live events."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.acl import Principal, Right, parse_feed_rights
from server.follows import copy_item
from server.hub import event_for

ORIGIN = "user:bob"
FOLLOWER = "timeline:carol"
SUBS = ["bob", "carol", "dave", "x\x1fm", "m", "e"]  # hostile ids: separators and token look-alikes
ROLES = ["staff", "m", "p", "x\x1fp"]
RIGHTS = ["read", "member", "admin", "write"]

entries = st.one_of(
    st.sampled_from([{"type": "public"}, {"type": "everyone"}, {"type": "members"}]),
    st.builds(lambda i: {"type": "identity", "id": i}, st.sampled_from(SUBS)),
    st.builds(lambda i: {"type": "role", "id": i}, st.sampled_from(ROLES)),
)
activities = st.builds(
    lambda actor, audience, verb: {
        "id": "01JH3Y8V6K3M5Q1W2E3R4T5Y6U",
        "feed": ORIGIN,
        "seq": 3,
        "actor": {"id": actor},
        "verb": verb,
        "object": "o",
        "time": "2026-01-14T09:30:00.000Z",
        "created_at": "2026-01-14T09:30:00.000Z",
        "audience": audience,
    },
    st.sampled_from(SUBS),
    st.lists(entries, max_size=3),
    st.sampled_from(["post", "m", "\x1fp"]),
)
claims = st.dictionaries(
    st.sampled_from([ORIGIN, FOLLOWER, "user:*", "timeline:*", "*"]),
    st.lists(st.sampled_from(RIGHTS), max_size=2),
    max_size=3,
)
principals = st.one_of(
    st.just(Principal()),
    st.builds(
        lambda sub, roles, feeds, admin: Principal(
            sub=sub, roles=frozenset(roles), feeds=parse_feed_rights(feeds), admin=admin, kind="jwt"
        ),
        st.sampled_from(SUBS),
        st.lists(st.sampled_from(ROLES), max_size=2),
        claims,
        st.booleans(),
    ),
)


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    import orjson

    item = copy_item(ORIGIN, FOLLOWER, doc, "2026-01-14T09:31:00.000Z")
    body = orjson.loads(item.rest)
    return {"id": item.id, "seq": 9, **body}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(principal=principals, doc=activities)
def test_copy_visible_exactly_when_the_original_is(principal: Principal, doc: dict[str, Any]) -> None:
    """Viewer.can_see on the follower feed equals the origin feed's rule on the original."""
    copy = _copy(doc)
    sees_original = principal.viewer(ORIGIN).can_see(doc)
    assert principal.viewer(FOLLOWER).can_see(copy) == sees_original
    # live pushes and resume replays use the same rule
    event = {"seq": 9, "event": "created", "activity": copy}
    assert (event_for(principal.viewer(FOLLOWER), event) is not None) == sees_original


@settings(max_examples=200, deadline=None)
@given(principal=principals, before=activities, after=activities)
def test_updates_of_copies_follow_the_origin_rule(principal: Principal, before: dict[str, Any], after: dict[str, Any]):
    """An update of a copy is created/updated/deleted for a reader exactly as its visibility changed."""
    new = _copy(after)
    prev = {"actor": before["actor"], "audience": before["audience"]}
    out = event_for(principal.viewer(FOLLOWER), {"seq": 9, "event": "updated", "activity": new, "prev": prev})
    saw, sees = principal.viewer(ORIGIN).can_see(before), principal.viewer(ORIGIN).can_see(after)
    expected = {(True, True): "updated", (True, False): "deleted", (False, True): "created"}.get((saw, sees))
    assert (out[0] if out else None) == expected


def test_follower_feed_admin_gains_nothing() -> None:
    """Administering the follower feed does not reveal a members-only copy; membership of the origin does."""
    doc = {
        "id": "a",
        "actor": {"id": "bob"},
        "verb": "v",
        "audience": [{"type": "members"}],
        "time": "2026-01-14T09:30:00.000Z",
    }
    copy = _copy(doc)
    carol = Principal(
        sub="carol", feeds=((FOLLOWER, Right.READ | Right.WRITE | Right.MEMBER | Right.ADMIN),), kind="jwt"
    )
    assert not carol.viewer(FOLLOWER).can_see(copy)
    member = Principal(sub="dave", feeds=(("user:*", Right.MEMBER | Right.READ),), kind="jwt")
    assert member.viewer(FOLLOWER).can_see(copy)
