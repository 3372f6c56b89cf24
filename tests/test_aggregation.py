"""Aggregated and notification feeds (SPEC §12): the safe template renderer, groups, pagination by
group id, marks on read and by ids or all, and live counts."""

from __future__ import annotations

import pytest
from conftest import recv, subscribe

from server.aggregation import render, restricted_group

DOC = {
    "id": "01JH3Y8V6K3M5Q1W2E3R4T5Y6U",
    "feed": "aggregated:1",
    "actor": {"id": "alice"},
    "verb": "like",
    "object": {"id": "p:1", "type": "photo"},
    "target": "album:9",
    "time": "2026-01-14T09:30:00.000Z",
}


def test_render_supports_getstream_variables_and_nothing_else() -> None:
    """verb/actor/object/target/feed/id/time.strftime render; unknown names and code render empty."""
    assert render('{{ verb }}_{{ time.strftime("%Y-%m-%d") }}', DOC) == "like_2026-01-14"
    assert render("{{actor}}-{{ object }}-{{ target }}-{{ feed }}-{{ id }}", DOC) == (
        "alice-p:1-album:9-aggregated:1-01JH3Y8V6K3M5Q1W2E3R4T5Y6U"
    )
    assert render("{{ time.strftime('%H') }}h {{ nope }}{{ __import__('os') }}", DOC) == "09h {{ __import__('os') }}"
    assert render("{{ time.strftime('%Q') }}x", {"time": "bad"}) == "x"


def test_restricted_group_counts_only_what_it_is_given() -> None:
    """A restricted reader's group counts, times and activities come from the visible ones only."""
    docs = [
        {**DOC, "id": "3", "actor": {"id": "bob"}, "time": "2026-01-14T11:00:00.000Z"},
        {**DOC, "id": "1"},
    ]
    group = restricted_group("g1", {"group": "like", "verb": "like", "n": 40, "a": 9}, docs, cap=1)
    assert (group["activity_count"], group["actor_count"]) == (2, 2)
    assert [a["id"] for a in group["activities"]] == ["3"]
    assert (group["created_at"], group["updated_at"]) == (DOC["time"], "2026-01-14T11:00:00.000Z")


@pytest.fixture
async def admin(server):
    return server.http(server.token("root", admin=True))


async def test_aggregated_feed_groups_and_pagination(server, admin):
    """An aggregated feed reads as groups, newest first, paginated by group id; live events name
    the group each activity joins."""
    ws = await server.ws(server.token("root", admin=True))
    await subscribe(ws, "aggregated:1")
    items = [{"verb": v, "object": f"o:{i}", "actor": f"a{i % 2}"} for i, v in enumerate("abcabd")]
    await admin.post("/v1/feeds/aggregated:1/activities", json={"activities": items})
    body = (await admin.get("/v1/feeds/aggregated:1/groups", params={"limit": 2})).json()
    assert [g["verb"] for g in body["results"]] == ["d", "b"]
    assert body["results"][1]["activity_count"] == 2 and body["results"][1]["actor_count"] == 2
    rest = (await admin.get("/v1/feeds/aggregated:1/groups", params={"limit": 2, "id_lt": body["next"]})).json()
    assert [g["verb"] for g in rest["results"]] == ["a", "c"] and rest["next"] is None
    assert "unseen" not in body
    live = [await recv(ws) for _ in items]
    by_id = {g["id"]: g["group"] for g in body["results"] + rest["results"]}
    assert all(
        by_id[e["activity"]["aggregation_group"]["id"]] == e["activity"]["aggregation_group"]["group"] for e in live
    )
    assert [e["activity"]["aggregation_group"]["group"][:1] for e in live] == list("abcabd")
    kept = (await admin.get("/v1/feeds/aggregated:1/groups", params={"discard_actors": "a1"})).json()
    assert all(a["actor"]["id"] == "a0" for g in kept["results"] for a in g["activities"])


async def test_notification_feed_marks_and_live_counts(server, admin):
    """Notification groups carry is_seen/is_read; mark_seen on read, marks by ids and all; counts live."""
    ws = await server.ws(server.token("u-1"))
    await subscribe(ws, "notifications:u-1")
    items = [{"verb": v, "object": "o"} for v in ("follow", "like", "like")]
    await admin.post("/v1/feeds/notifications:u-1/activities", json={"activities": items})
    for _ in items:
        assert (await recv(ws))["event"] == "created"
    owner = server.http(server.token("u-1"))
    first = (await owner.get("/v1/feeds/notifications:u-1/groups", params={"mark_seen": "true"})).json()
    assert [(g["verb"], g["activity_count"], g["is_seen"]) for g in first["results"]] == [
        ("like", 2, False),
        ("follow", 1, False),
    ]
    assert first["unseen"] == 2 and first["unread"] == 2
    # live counts: activities (as for every notification feed) and groups (after the writes' counts)
    counts = await recv(ws)
    while counts["unseen"]:
        assert counts["groups"] == {"unseen": 2, "unread": 2}
        counts = await recv(ws)
    want = {"unseen": 0, "unread": 3, "groups": {"unseen": 0, "unread": 2}}
    assert counts == {"type": "notifications", "feed": "notifications:u-1", **want}
    second = (await owner.get("/v1/feeds/notifications:u-1/groups")).json()
    assert second["unseen"] == 0 and second["unread"] == 2 and all(g["is_seen"] for g in second["results"])
    like = second["results"][0]["id"]
    r = await owner.post("/v1/feeds/notifications:u-1/groups/read", json={"ids": [like]})
    assert r.json() == {"unseen": 0, "unread": 1}
    r = await owner.post("/v1/feeds/notifications:u-1/groups/read", json={"all": True})
    assert r.json() == {"unseen": 0, "unread": 0}
    # the activity-level notification API keeps working on the same feed
    legacy = (await owner.get("/v1/notifications")).json()
    assert legacy["unseen"] == 0 and len(legacy["results"]) == 3
    other = server.http(server.token("u-2"))
    assert (await other.get("/v1/feeds/notifications:u-1/groups")).status_code == 403
