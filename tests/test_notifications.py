"""Notifications (SPEC §6) and `to` copies, checked live over WebSocket against the real server."""

from __future__ import annotations

import pytest
from conftest import nothing_more, recv, recv_until, subscribe

FEED = "booking:f4d1"
WRITER = {"booking:*": ["read", "write", "member"], "team:*": ["write"]}
NOTIFY = {
    "verb": "comment.mention",
    "object": "c:1",
    "text": "@u-7 look",
    "audience": ["members", {"type": "identity", "id": "u-7", "notify": True}],
}


@pytest.fixture
async def alice(server):
    return server.http(server.token("alice", WRITER, name="Alice"))


async def test_notify_copies_into_the_notification_feed_live(server, alice):
    """An identity entry with notify puts a copy in notifications:<id>, pushed live to its owner."""
    u7 = server.token("u-7")  # no feeds claim at all: one's own notification feed is always readable
    ws = await server.ws(u7)
    await subscribe(ws, "notifications:u-7")
    r = await alice.post(f"/v1/feeds/{FEED}/activities", json=NOTIFY)
    original = r.json()["activities"][0]
    event = await recv(ws)
    copy = event["activity"]
    assert event["feed"] == "notifications:u-7" and event["event"] == "created"
    assert copy["id"] == original["id"] and copy["origin"] == FEED and copy["feed"] == "notifications:u-7"
    assert copy["text"] == original["text"] and copy["actor"]["id"] == "alice"
    page = (await server.http(u7).get("/v1/notifications")).json()
    assert page["unseen"] == 1 and page["unread"] == 1 and page["next"] is None
    assert [(a["id"], a["is_seen"], a["is_read"]) for a in page["results"]] == [(original["id"], False, False)]
    others = server.http(server.token("u-8"))
    assert (await others.get("/v1/feeds/notifications:u-7/activities")).status_code == 403
    assert (await server.http().get("/v1/notifications")).status_code == 401


async def test_seen_and_read_marks_push_counts_to_other_connections(server, alice):
    """seen/read by ids or all update the counts, and the owner's other connections get them live."""
    u7 = server.token("u-7")
    ids = []
    for i in range(3):
        r = await alice.post(f"/v1/feeds/{FEED}/activities", json={**NOTIFY, "text": f"n{i}"})
        ids.append(r.json()["activities"][0]["id"])
    other = await server.ws(u7)
    await subscribe(other, "notifications:u-7")
    http = server.http(u7)
    assert (await http.post("/v1/notifications/seen", json={"ids": [ids[0]]})).json() == {"unseen": 2, "unread": 3}
    assert await recv(other) == {"type": "notifications", "feed": "notifications:u-7", "unseen": 2, "unread": 3}
    assert (await http.post("/v1/notifications/read", json={"ids": [ids[1]]})).json() == {"unseen": 1, "unread": 2}
    assert (await recv(other))["unread"] == 2
    page = (await http.get("/v1/notifications")).json()
    flags = {a["id"]: (a["is_seen"], a["is_read"]) for a in page["results"]}
    assert flags == {ids[0]: (True, False), ids[1]: (True, True), ids[2]: (False, False)}
    assert (await http.post("/v1/notifications/read", json={"all": True})).json() == {"unseen": 0, "unread": 0}
    assert (await recv(other))["unseen"] == 0
    for bad in ({}, {"ids": []}, {"ids": "x"}, {"all": False}, {"ids": [1]}):
        assert (await http.post("/v1/notifications/seen", json=bad)).status_code == 422
    # a new notification is unseen again
    await alice.post(f"/v1/feeds/{FEED}/activities", json=NOTIFY)
    assert (await http.get("/v1/notifications")).json()["unseen"] == 1


async def test_to_copies_need_write_and_follow_updates_and_deletes(server, alice):
    """`to` feeds get a copy (writer needs write there); updates and deletes of the original reach them."""
    denied = await alice.post(f"/v1/feeds/{FEED}/activities", json={"verb": "v", "object": "o", "to": ["ops:1"]})
    assert denied.status_code == 403
    watcher = await server.ws(server.token("w", {"team:*": ["member"], "booking:*": ["member"]}))
    await subscribe(watcher, "team:a")
    await subscribe(watcher, "team:b")
    body = {"verb": "v", "object": "o", "text": "t", "to": ["team:a"], "audience": ["members"]}
    original = (await alice.post(f"/v1/feeds/{FEED}/activities", json=body)).json()["activities"][0]
    created = await recv(watcher)
    assert created["feed"] == "team:a" and created["activity"]["origin"] == FEED
    assert created["activity"]["id"] == original["id"] and "to" not in created["activity"]
    r = await server.http(server.token("w", {"team:*": ["member"]})).get("/v1/feeds/team:a/activities")
    assert [a["id"] for a in r.json()["results"]] == [original["id"]]
    url = f"/v1/feeds/{FEED}/activities/{original['id']}"
    await alice.patch(url, json={"set": {"text": "edited"}})
    updated = await recv(watcher)
    assert (updated["feed"], updated["event"], updated["activity"]["text"]) == ("team:a", "updated", "edited")
    await alice.patch(url, json={"set": {"to": ["team:b"]}})  # moved: gone from a, created in b
    moved = sorted([(e["feed"], e["event"]) for e in (await recv(watcher), await recv(watcher))])
    assert moved == [("team:a", "deleted"), ("team:b", "created")]
    await alice.delete(url)
    deleted = await recv(watcher)
    assert (deleted["feed"], deleted["event"], deleted["activity"]["id"]) == ("team:b", "deleted", original["id"])
    await nothing_more(watcher)


async def test_notification_owner_sees_copies_whatever_their_audience(server, alice):
    """A copy sent with `to: [notifications:<sub>]` is visible to that owner even if the audience is narrow."""
    admin = server.http(server.token("boss", {"booking:*": ["admin"], "notifications:*": ["write"]}))
    r = await admin.post(
        f"/v1/feeds/{FEED}/activities",
        json={"verb": "v", "object": "o", "audience": ["role:ops"], "to": ["notifications:u-7"]},
    )
    assert r.status_code == 201
    page = (await server.http(server.token("u-7")).get("/v1/notifications")).json()
    assert len(page["results"]) == 1 and page["unseen"] == 1


async def test_upsert_of_a_notifying_activity_updates_its_copy(server, alice):
    """Re-posting the same (foreign_id, time) updates the original and its notification copy in place."""
    ws = await server.ws(server.token("u-7"))
    await subscribe(ws, "notifications:u-7")
    body = {**NOTIFY, "foreign_id": "c:1", "time": "2026-01-14T09:30:00Z"}
    await alice.post(f"/v1/feeds/{FEED}/activities", json=body)
    await alice.post(f"/v1/feeds/{FEED}/activities", json={**body, "text": "second"})
    # (skipping the group counts frames a notification feed group pushes after writes)
    first, second = await recv_until(ws, "activity"), await recv_until(ws, "activity")
    assert (first["event"], second["event"]) == ("created", "updated")
    assert second["activity"]["text"] == "second"
    page = (await server.http(server.token("u-7")).get("/v1/notifications")).json()
    assert len(page["results"]) == 1


async def test_invalid_notify_identity_is_422(alice):
    """An identity that cannot name a notification feed cannot be notified."""
    r = await alice.post(
        f"/v1/feeds/{FEED}/activities",
        json={**NOTIFY, "audience": [{"type": "identity", "id": "has space", "notify": True}]},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "audience.0.id"
