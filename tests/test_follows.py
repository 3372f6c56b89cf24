"""Follows (SPEC §12): timelines built by the durable fan-out, checked against the real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import recv, subscribe

ALICE = {"user:alice": ["admin"], "timeline:alice": ["admin"], "user:*": ["read"]}
BOB = {"user:bob": ["admin"], "timeline:bob": ["admin"], "user:*": ["read"]}


async def eventually(check: Any, timeout: float = 10.0) -> Any:
    """Poll ``check()`` (async) until it returns a truthy value."""
    async with asyncio.timeout(timeout):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.05)


async def timeline(client: Any, feed: str, **params: Any) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/feeds/{feed}/activities", params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    return r.json()["results"]


@pytest.fixture
async def alice(server):
    return server.http(server.token("alice", ALICE))


@pytest.fixture
async def bob(server):
    return server.http(server.token("bob", BOB))


async def test_follow_copies_history_and_later_changes_in_order(server, alice, bob):
    """Following copies the latest activities; later creates, updates and deletes reach the timeline."""
    first = (
        await bob.post(
            "/v1/feeds/user:bob/activities", json={"verb": "post", "object": "o:1", "audience": ["everyone"]}
        )
    ).json()
    old = first["activities"][0]
    r = await alice.post("/v1/feeds/timeline:alice/follows", json={"target": "user:bob", "activity_copy_limit": 10})
    assert r.status_code == 201, r.text
    assert r.json()["follow"]["feed_id"] == "timeline:alice" and r.json()["follow"]["target_id"] == "user:bob"
    [copy] = await timeline(alice, "timeline:alice")
    assert copy["id"] == old["id"] and copy["origin"] == "user:bob" and copy["feed"] == "timeline:alice"

    ws = await server.ws(server.token("alice", ALICE))
    await subscribe(ws, "timeline:alice")
    new = (
        await bob.post(
            "/v1/feeds/user:bob/activities", json={"verb": "post", "object": "o:2", "audience": ["everyone"]}
        )
    ).json()
    created = await recv(ws, 10)
    assert created["event"] == "created" and created["activity"]["id"] == new["activities"][0]["id"]
    r = await bob.patch(f"/v1/feeds/user:bob/activities/{old['id']}", json={"set": {"text": "edited"}})
    assert r.status_code == 200, r.text
    updated = await recv(ws, 10)
    assert updated["event"] == "updated" and updated["activity"]["text"] == "edited"
    assert (await bob.delete(f"/v1/feeds/user:bob/activities/{new['activities'][0]['id']}")).status_code == 204
    deleted = await recv(ws, 10)
    assert deleted["event"] == "deleted" and deleted["activity"]["id"] == new["activities"][0]["id"]
    assert created["seq"] < updated["seq"] < deleted["seq"]
    items = await timeline(alice, "timeline:alice")
    assert [(a["id"], a.get("text")) for a in items] == [(old["id"], "edited")]


async def test_unfollow_removes_copies_unless_keep_history(server, alice, bob):
    """Unfollow deletes the copies; with keep_history they stay; no further changes arrive."""
    await bob.post("/v1/feeds/user:bob/activities", json={"verb": "post", "object": "o:1", "audience": ["everyone"]})
    await alice.post("/v1/feeds/timeline:alice/follows", json={"target": "user:bob"})
    await alice.post("/v1/feeds/user:alice/follows", json={"target": "user:bob"})
    assert len(await timeline(alice, "timeline:alice")) == 1
    assert (await alice.delete("/v1/feeds/timeline:alice/follows/user:bob")).status_code == 204
    assert await timeline(alice, "timeline:alice") == []
    r = await alice.delete("/v1/feeds/user:alice/follows/user:bob", params={"keep_history": "true"})
    assert r.status_code == 204
    assert len(await timeline(alice, "user:alice")) == 1
    await bob.post("/v1/feeds/user:bob/activities", json={"verb": "post", "object": "o:2", "audience": ["everyone"]})
    await asyncio.sleep(0.5)
    assert len(await timeline(alice, "user:alice")) == 1 and await timeline(alice, "timeline:alice") == []


async def test_unfollow_during_a_fanout_round_leaves_no_copy(server, alice, bob):
    """A fan-out round that read the follower list before an unfollow writes no copy after it: the
    worker is held between reading the followers and writing their copies while the unfollow runs."""
    follows = server.app.fanout.follows
    scanned, release = asyncio.Event(), asyncio.Event()
    real_scan = follows.follower_scan

    async def held_scan(feed: str, cursor: int, count: int) -> tuple[int, list[str]]:
        found = await real_scan(feed, cursor, count)
        if feed == "user:bob" and "timeline:alice" in found[1]:
            scanned.set()
            await asyncio.wait_for(release.wait(), 10)
        return found

    follows.follower_scan = held_scan  # the real scan, paused after it answered
    r = await alice.post("/v1/feeds/timeline:alice/follows", json={"target": "user:bob", "activity_copy_limit": 0})
    assert r.status_code == 201, r.text
    r = await bob.post(
        "/v1/feeds/user:bob/activities", json={"verb": "post", "object": "o:1", "audience": ["everyone"]}
    )
    assert r.status_code == 201, r.text
    await asyncio.wait_for(scanned.wait(), 10)  # the round holds [timeline:alice]
    assert (await alice.delete("/v1/feeds/timeline:alice/follows/user:bob")).status_code == 204
    release.set()
    await eventually(lambda: _caught_up(follows, "user:bob"))  # the round finished
    assert await timeline(alice, "timeline:alice") == []
    # Following again: the next change is copied (the guard lets copies through while the edge exists).
    r = await alice.post("/v1/feeds/timeline:alice/follows", json={"target": "user:bob", "activity_copy_limit": 0})
    assert r.status_code == 201, r.text
    r = await bob.post(
        "/v1/feeds/user:bob/activities", json={"verb": "post", "object": "o:2", "audience": ["everyone"]}
    )
    [copy] = await eventually(lambda: timeline(alice, "timeline:alice"))
    assert copy["id"] == r.json()["activities"][0]["id"] and copy["origin"] == "user:bob"


async def _caught_up(follows: Any, feed: str) -> bool:
    """True once ``feed``'s fan-out cursor reached its seq (every change went through a round)."""
    return await follows.behind([feed]) == [0]


async def test_lists_stats_and_batches(server):
    """follow_many, followers/following with pagination and filter, stats, unfollow_many."""
    admin = server.http(server.token("root", admin=True))
    pairs = [{"source": f"timeline:u{i}", "target": "user:star"} for i in range(30)]
    pairs.append({"source": "timeline:u0", "target": "user:other"})
    r = await admin.post("/v1/follows", json={"follows": pairs, "activity_copy_limit": 0})
    assert r.status_code == 201 and len(r.json()["follows"]) == 31
    page1 = (await admin.get("/v1/feeds/user:star/followers", params={"limit": 20})).json()["results"]
    page2 = (await admin.get("/v1/feeds/user:star/followers", params={"limit": 20, "offset": 20})).json()["results"]
    assert len(page1) == 20 and len(page2) == 10
    assert {f["feed_id"] for f in page1 + page2} == {f"timeline:u{i}" for i in range(30)}
    following = (await admin.get("/v1/feeds/timeline:u0/following")).json()["results"]
    assert {f["target_id"] for f in following} == {"user:star", "user:other"}
    only = (await admin.get("/v1/feeds/timeline:u0/following", params={"filter": "user:other,user:none"})).json()
    assert [f["target_id"] for f in only["results"]] == ["user:other"]
    stats = (await admin.get("/v1/feeds/user:star/follow_stats")).json()["results"]
    assert stats["followers"] == {"feed": "user:star", "count": 30} and stats["following"]["count"] == 0
    slugs = (await admin.get("/v1/feeds/timeline:u0/follow_stats", params={"following_slugs": "user"})).json()
    assert slugs["results"]["following"]["count"] == 2
    r = await admin.post("/v1/unfollows", json={"follows": pairs[:10]})
    assert r.json() == {"removed": 10}
    stats = (await admin.get("/v1/feeds/user:star/follow_stats")).json()["results"]
    assert stats["followers"]["count"] == 20


async def test_follow_rights_and_validation(server, alice):
    """Following needs write on the follower feed and read on the target; bad input is 422."""
    assert (await alice.post("/v1/feeds/timeline:bob/follows", json={"target": "user:x"})).status_code == 403
    r = await alice.post("/v1/feeds/timeline:alice/follows", json={"target": "secret:x"})
    assert r.status_code == 403
    r = await alice.post("/v1/feeds/timeline:alice/follows", json={"target": "user:x", "activity_copy_limit": 1001})
    assert r.status_code == 422
    assert (await alice.post("/v1/feeds/timeline:alice/follows", json={"target": "bad feed"})).status_code == 422
    assert (await alice.post("/v1/feeds/timeline:alice/follows", json={})).status_code == 422


async def test_copies_keep_the_origin_audience(server, bob):
    """A members-only activity of user:bob is not visible in a follower feed to non-members of user:bob."""
    admin = server.http(server.token("root", admin=True))
    await admin.post("/v1/feeds/timeline:carol/follows", json={"target": "user:bob"})
    await bob.post("/v1/feeds/user:bob/activities", json={"verb": "secret", "object": "o", "audience": ["members"]})
    await bob.post("/v1/feeds/user:bob/activities", json={"verb": "open", "object": "o", "audience": ["everyone"]})

    async def both() -> bool:
        return len(await timeline(admin, "timeline:carol")) == 2

    await eventually(both)
    # carol administers her timeline but is no member of user:bob: she sees only the open one
    carol = server.http(server.token("carol", {"timeline:carol": ["admin"]}))
    assert [a["verb"] for a in await timeline(carol, "timeline:carol")] == ["open"]
    assert (await carol.get("/v1/feeds/timeline:carol/activities")).json()["hidden"] == 1
    member = server.http(server.token("dave", {"timeline:carol": ["read"], "user:bob": ["member"]}))
    assert sorted(a["verb"] for a in await timeline(member, "timeline:carol")) == ["open", "secret"]
    ws = await server.ws(server.token("carol", {"timeline:carol": ["admin"]}))
    await subscribe(ws, "timeline:carol")
    await bob.post("/v1/feeds/user:bob/activities", json={"verb": "secret2", "object": "o", "audience": ["members"]})
    await bob.post("/v1/feeds/user:bob/activities", json={"verb": "open2", "object": "o", "audience": ["everyone"]})
    event = await recv(ws, 10)
    assert event["activity"]["verb"] == "open2"


async def test_timeline_reads_match_the_origin_rule(server):
    """Random audiences, several readers: the timeline page shows exactly what each reader could see
    in the origin feed (the Lua history filter plus the copy rule, paged with hidden copies)."""
    import random

    from server.acl import Principal, parse_feed_rights

    rng = random.Random(12)
    admin = server.http(server.token("root", admin=True))
    await admin.post("/v1/feeds/timeline:t/follows", json={"target": "user:o"})
    kinds = [["public"], ["everyone"], ["members"], ["identity:r1"], ["role:staff"], ["identity:r2"], []]
    items = [
        {"verb": f"v{i}", "object": "o", "actor": rng.choice(["o", "r1"]), "audience": rng.choice(kinds)}
        for i in range(40)
    ]
    await admin.post("/v1/feeds/user:o/activities", json={"activities": items})

    async def copied() -> bool:
        return len(await timeline(admin, "timeline:t")) == 40

    await eventually(copied)
    readers = [
        ("r1", {"timeline:t": ["read"]}, []),
        ("r2", {"timeline:t": ["admin"]}, ["staff"]),
        ("r3", {"timeline:t": ["read"], "user:o": ["member"]}, []),
        ("r4", {"timeline:*": ["read"], "user:*": ["admin"]}, []),
    ]
    origin = (await admin.get("/v1/feeds/user:o/activities", params={"limit": 100})).json()["results"]
    for sub, feeds, roles in readers:
        principal = Principal(sub=sub, roles=frozenset(roles), feeds=parse_feed_rights(feeds), kind="jwt")
        expected = [a["verb"] for a in origin if principal.viewer("user:o").can_see(a)]
        client = server.http(server.token(sub, feeds, roles=roles))
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 7}
        for _ in range(20):  # small pages: hidden copies must not end or skip a page
            body = (await client.get("/v1/feeds/timeline:t/activities", params=params)).json()
            seen += [a["verb"] for a in body["results"]]
            if not body["next"]:
                break
            params = dict(item.split("=") for item in body["next"].split("?")[1].split("&"))
        assert seen == expected, sub
