"""The rights and visibility rules (SPEC §3), without I/O."""

from __future__ import annotations

import pytest

from server.acl import ALL_RIGHTS, Principal, Right, parse_feed_rights, parse_rights, pattern_matches


def test_rights_names_and_implications():
    """member implies read; admin implies everything; unknown names are refused."""
    assert parse_rights(["member"]) == Right.MEMBER | Right.READ
    assert parse_rights(["admin"]) == ALL_RIGHTS
    assert parse_rights(["read", "write"]) == Right.READ | Right.WRITE
    with pytest.raises(ValueError):
        parse_rights(["root"])


def test_patterns():
    """A pattern is an exact feed name or a prefix ending in '*'."""
    assert pattern_matches("booking:*", "booking:f4d1")
    assert not pattern_matches("booking:*", "bookings:f4d1")
    assert pattern_matches("user:42", "user:42") and not pattern_matches("user:42", "user:420")
    assert pattern_matches("*", "anything")


def test_principal_rights_union_and_own_notifications():
    """Rights of every matching pattern add up; everyone reads its own notification feed."""
    p = Principal(sub="u1", feeds=parse_feed_rights({"org:*": ["read"], "org:1": ["write"]}), kind="jwt")
    assert p.rights("org:1") == Right.READ | Right.WRITE
    assert p.rights("org:2") == Right.READ
    assert p.rights("other") == Right.NONE
    assert p.rights("notifications:u1") & Right.READ
    assert not p.rights("notifications:u2") & Right.READ


def test_anonymous_reads_only_public_feeds():
    """Anonymous principals get read on public feed patterns and nothing else."""
    anon = Principal(public_feeds=("public:*",))
    assert anon.rights("public:news") == Right.READ
    assert anon.rights("private:x") == Right.NONE


def _activity(actor: str, *audience: dict) -> dict:
    return {"actor": {"id": actor}, "audience": list(audience)}


@pytest.mark.parametrize(
    ("entry", "who", "visible"),
    [
        ({"type": "public"}, "anon", True),
        ({"type": "everyone"}, "anon", False),
        ({"type": "everyone"}, "stranger", True),
        ({"type": "members"}, "stranger", False),
        ({"type": "members"}, "member", True),
        ({"type": "identity", "id": "u7"}, "u7", True),
        ({"type": "identity", "id": "u7"}, "stranger", False),
        ({"type": "role", "id": "accounting"}, "accountant", True),
        ({"type": "role", "id": "accounting"}, "stranger", False),
    ],
)
def test_visibility_per_audience_type(entry, who, visible):
    """Each audience type admits exactly the principals of SPEC §1."""
    read = parse_feed_rights({"f": ["read"]})
    principals = {
        "anon": Principal(public_feeds=("f",)),
        "stranger": Principal(sub="s", feeds=read, kind="jwt"),
        "member": Principal(sub="m", feeds=parse_feed_rights({"f": ["member"]}), kind="jwt"),
        "u7": Principal(sub="u7", feeds=read, kind="jwt"),
        "accountant": Principal(sub="a", roles=frozenset({"accounting"}), feeds=read, kind="jwt"),
    }
    assert principals[who].viewer("f").can_see(_activity("author", entry)) is visible


def test_actor_and_feed_admin_always_see():
    """The actor sees its own activity and a feed admin sees everything, whatever the audience."""
    hidden = _activity("author")  # empty audience: nobody else
    author = Principal(sub="author", kind="jwt")
    admin = Principal(sub="boss", feeds=parse_feed_rights({"f": ["admin"]}), kind="jwt")
    member = Principal(sub="m", feeds=parse_feed_rights({"f": ["member"]}), kind="jwt")
    assert author.viewer("f").can_see(hidden)
    assert admin.viewer("f").can_see(hidden)
    assert not member.viewer("f").can_see(hidden)
