"""Materialized groups of aggregated and notification feeds (SPEC §12, GetStream's rules): a group
keeps its id and counts however many activities follow it, returns its newest activities only,
re-opens as unseen when it gains one, pages by group id while activities arrive, and the default
template splits groups by day."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import RunningServer, recv, subscribe

pytestmark = pytest.mark.timeout(120)

GROUPS = {
    "aggregated": {"type": "aggregated"},
    "notification": {"type": "notification"},
    "notifications": {"type": "notification"},
    "byverb": {"type": "aggregated", "aggregation_format": "{{ verb }}", "max_group_activities": 3},
    "byobject": {"type": "aggregated", "aggregation_format": "{{ object }}"},
}


@pytest.fixture
async def srv(server_factory: Any) -> RunningServer:
    """A server whose resume window (the change log) is far shorter than the feeds."""
    server: RunningServer = await server_factory(feed_groups=GROUPS, feeds={"resume_window": 50})
    return server


async def _groups(http: Any, feed: str, **params: Any) -> dict[str, Any]:
    r = await http.get(f"/v1/feeds/{feed}/groups", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_group_cap_keeps_full_counts_beyond_the_read_window(srv: RunningServer) -> None:
    """A group returns its newest max_group_activities but counts every activity and actor, and
    an old group survives 1,100 newer activities (more than the old 1,000-activity read window
    and than the change log: the groups are rebuilt, then folded incrementally)."""
    admin = srv.http(srv.token("root", admin=True))
    feed = "byverb:1"
    rare = (await admin.post(f"/v1/feeds/{feed}/activities", json={"verb": "rare", "object": "o"})).json()
    first = await _groups(admin, feed)
    rare_id = first["results"][0]["id"]
    posted: list[str] = []
    for batch in range(11):
        items = [{"verb": "like", "object": f"p:{batch}-{i}", "actor": f"u{i % 4}"} for i in range(100)]
        r = await admin.post(f"/v1/feeds/{feed}/activities", json={"activities": items})
        posted += [a["id"] for a in r.json()["activities"]]
    body = await _groups(admin, feed)
    like, old = body["results"]
    assert (like["group"], like["activity_count"], like["actor_count"]) == ("like", 1100, 4)
    assert [a["id"] for a in like["activities"]] == sorted(posted, reverse=True)[:3]
    assert (old["id"], old["group"], old["activity_count"]) == (rare_id, "rare", 1)
    assert old["activities"][0]["id"] == rare["activities"][0]["id"]
    # incremental folds: a delete leaves the group, a new activity joins it
    await admin.delete(f"/v1/feeds/{feed}/activities/{posted[-1]}")
    await admin.post(f"/v1/feeds/{feed}/activities", json={"verb": "like", "object": "x", "actor": "u9"})
    like2 = (await _groups(admin, feed, limit=1))["results"][0]
    assert (like2["id"], like2["activity_count"], like2["actor_count"]) == (like["id"], 1100, 5)
    # deleting a group's only activity removes the group
    await admin.delete(f"/v1/feeds/{feed}/activities/{rare['activities'][0]['id']}")
    assert [g["group"] for g in (await _groups(admin, feed))["results"]] == ["like"]


async def test_notification_group_is_unseen_again_after_a_new_activity(srv: RunningServer) -> None:
    """A group marked seen and read is unseen and unread again once an activity joins it; the
    other groups stay seen; the group keeps its id."""
    admin = srv.http(srv.token("root", admin=True))
    owner = srv.http(srv.token("u-1"))
    feed = "notifications:u-1"
    items = [{"verb": v, "object": "o"} for v in ("follow", "like", "like")]
    await admin.post(f"/v1/feeds/{feed}/activities", json={"activities": items})
    await _groups(owner, feed, mark_read="true")
    before = await _groups(owner, feed)
    assert (before["unseen"], before["unread"]) == (0, 0)
    ids = {g["verb"]: g["id"] for g in before["results"]}
    ws = await srv.ws(srv.token("u-1"))
    await subscribe(ws, feed)
    await admin.post(f"/v1/feeds/{feed}/activities", json={"verb": "like", "object": "o2"})
    event = await recv(ws)
    assert event["activity"]["aggregation_group"]["id"] == ids["like"]
    after = await _groups(owner, feed)
    assert (after["unseen"], after["unread"]) == (1, 1)
    flags = {g["id"]: (g["verb"], g["activity_count"], g["is_seen"], g["is_read"]) for g in after["results"]}
    assert flags == {ids["like"]: ("like", 3, False, False), ids["follow"]: ("follow", 1, True, True)}
    r = await owner.post(f"/v1/feeds/{feed}/groups/seen", json={"ids": [ids["like"]]})
    assert r.json() == {"unseen": 0, "unread": 1}
    r = await owner.post(f"/v1/feeds/{feed}/groups/read", json={"ids": [ids["like"]]})
    assert r.json() == {"unseen": 0, "unread": 0}
    # marking a group marks all its activities at the activity level too
    assert (await owner.get("/v1/notifications")).json()["unread"] == 0


async def test_pagination_by_group_id_is_stable_while_activities_arrive(srv: RunningServer) -> None:
    """id_lt (a group id) continues after that group although a new group appeared on top and a
    group above the cursor gained an activity (and moved to the top, keeping its id)."""
    admin = srv.http(srv.token("root", admin=True))
    feed = "byobject:1"
    items = [{"verb": "v", "object": f"o{i}", "time": f"2026-01-1{i}T10:00:00Z"} for i in range(6)]
    await admin.post(f"/v1/feeds/{feed}/activities", json={"activities": items})
    first = await _groups(admin, feed, limit=2)
    assert [g["group"] for g in first["results"]] == ["o5", "o4"]
    top_id = first["results"][0]["id"]
    new = [
        {"verb": "v", "object": "o9", "time": "2026-01-20T10:00:00Z"},
        {"verb": "v", "object": "o5", "time": "2026-01-21T10:00:00Z"},
    ]
    await admin.post(f"/v1/feeds/{feed}/activities", json={"activities": new})
    second = await _groups(admin, feed, limit=2, id_lt=first["next"])
    assert [g["group"] for g in second["results"]] == ["o3", "o2"]
    third = await _groups(admin, feed, limit=2, id_lt=second["next"])
    assert [g["group"] for g in third["results"]] == ["o1", "o0"] and third["next"] is None
    fresh = await _groups(admin, feed, limit=3)
    assert [(g["group"], g["activity_count"]) for g in fresh["results"]] == [("o5", 2), ("o9", 1), ("o4", 1)]
    assert fresh["results"][0]["id"] == top_id
    assert fresh["results"][0]["updated_at"] == "2026-01-21T10:00:00.000Z"
    assert fresh["results"][0]["created_at"] == "2026-01-15T10:00:00.000Z"
    unknown = await _groups(admin, feed, id_lt="0" * 24)
    assert unknown["results"] == [] and unknown["next"] is None


async def test_default_template_splits_groups_by_day(srv: RunningServer) -> None:
    """{{ verb }}_{{ time.strftime("%Y-%m-%d") }}: the same verb on two days is two groups."""
    admin = srv.http(srv.token("root", admin=True))
    feed = "aggregated:days"
    times = ["2026-01-14T23:59:00Z", "2026-01-15T00:01:00Z", "2026-01-15T10:00:00Z"]
    items = [{"verb": "like", "object": f"o{i}", "time": t} for i, t in enumerate(times)]
    await admin.post(f"/v1/feeds/{feed}/activities", json={"activities": items})
    body = await _groups(admin, feed)
    got = [(g["group"], g["activity_count"], g["created_at"], g["updated_at"]) for g in body["results"]]
    assert got == [
        ("like_2026-01-15", 2, "2026-01-15T00:01:00.000Z", "2026-01-15T10:00:00.000Z"),
        ("like_2026-01-14", 1, "2026-01-14T23:59:00.000Z", "2026-01-14T23:59:00.000Z"),
    ]


async def test_restricted_reader_gets_only_what_it_may_see(srv: RunningServer) -> None:
    """A reader who may not see every activity gets the same group ids, counted over what it
    may see; a group with nothing visible is left out."""
    admin = srv.http(srv.token("root", admin=True))
    reader = srv.http(srv.token("r", {"byverb:*": ["read"]}))
    feed = "byverb:2"
    items = [
        {"verb": "like", "object": "a", "actor": "x", "audience": ["public"]},
        {"verb": "like", "object": "b", "actor": "y"},
        {"verb": "secret", "object": "c", "actor": "y"},
    ]
    await admin.post(f"/v1/feeds/{feed}/activities", json={"activities": items})
    full = {g["group"]: g for g in (await _groups(admin, feed))["results"]}
    seen = (await _groups(reader, feed))["results"]
    assert [(g["id"], g["activity_count"], g["actor_count"]) for g in seen] == [(full["like"]["id"], 1, 1)]
    assert full["like"]["activity_count"] == 2 and "secret" in full
    kept = (await _groups(admin, feed, discard_actors="y"))["results"]
    assert [(g["group"], g["activity_count"]) for g in kept] == [("like", 1)]
