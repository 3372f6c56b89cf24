"""Reactions, users and collections (SPEC §12) against the real server: CRUD, listings, enriched
reads, live and resumable reaction events, reference expansion and GDPR actor discarding."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from conftest import recv, subscribe

FEEDS = {"user:*": ["read", "write", "member"]}


@pytest.fixture
async def alice(server):
    return server.http(server.token("alice", FEEDS))


@pytest.fixture
async def bob(server):
    return server.http(server.token("bob", FEEDS))


async def _post(client: Any, feed: str, **fields: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/feeds/{feed}/activities", json={"verb": "post", "object": "o", **fields})
    assert r.status_code == 201, r.text
    return r.json()["activities"][0]


async def test_reaction_crud_listing_and_children(server, alice, bob):
    """Add, get, update, delete; list by activity (kind filter, pagination), by user, children."""
    act = await _post(alice, "user:alice")
    made = []
    for i, kind in enumerate(["like", "comment", "like", "comment", "like"]):
        client = alice if i % 2 == 0 else bob
        r = await client.post(
            "/v1/reactions", json={"kind": kind, "activity_id": act["id"], "feed": "user:alice", "data": {"n": i}}
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    first = made[0]
    assert first["kind"] == "like" and first["user_id"] == "alice" and first["activity_id"] == act["id"]
    assert (await bob.get(f"/v1/reactions/{first['id']}")).json() == first
    listed = (await alice.get("/v1/reactions", params={"activity_id": act["id"], "feed": "user:alice"})).json()
    assert [r["id"] for r in listed["results"]] == [r["id"] for r in reversed(made)]
    likes = (
        await alice.get("/v1/reactions", params={"activity_id": act["id"], "feed": "user:alice", "kind": "like"})
    ).json()["results"]
    assert [r["data"]["n"] for r in likes] == [4, 2, 0]
    page = await alice.get(
        "/v1/reactions",
        params={"activity_id": act["id"], "feed": "user:alice", "kind": "like", "limit": 2, "id_lt": likes[1]["id"]},
    )
    assert [r["data"]["n"] for r in page.json()["results"]] == [0]
    mine = (await bob.get("/v1/reactions", params={"user_id": "bob"})).json()["results"]
    assert [r["data"]["n"] for r in mine] == [3, 1]
    assert (await alice.get("/v1/reactions", params={"user_id": "bob"})).status_code == 403
    child = await bob.post("/v1/reactions", json={"kind": "reply", "parent": first["id"], "data": {"t": "hi"}})
    assert child.status_code == 201 and child.json()["parent"] == first["id"]
    children = (await alice.get("/v1/reactions", params={"reaction_id": first["id"]})).json()["results"]
    assert [c["id"] for c in children] == [child.json()["id"]]
    assert (await bob.put(f"/v1/reactions/{first['id']}", json={"data": {"x": 1}})).status_code == 403
    r = await alice.put(f"/v1/reactions/{first['id']}", json={"data": {"x": 1}})
    assert r.status_code == 200 and r.json()["data"] == {"x": 1}
    assert (await alice.delete(f"/v1/reactions/{first['id']}")).status_code == 204
    assert (await alice.get(f"/v1/reactions/{first['id']}")).status_code == 404
    bad = await alice.post("/v1/reactions", json={"kind": "like", "activity_id": "nope", "feed": "user:alice"})
    assert bad.status_code == 404
    assert (await alice.post("/v1/reactions", json={"activity_id": act["id"], "feed": "user:alice"})).status_code == 422


async def test_enriched_reads_with_counts_recent_and_own(server, alice, bob):
    """A read with the reaction flags carries reaction_counts, latest_reactions and own_reactions."""
    act = await _post(alice, "user:alice")
    for client, kind in [(alice, "like"), (bob, "like"), (bob, "comment")]:
        await client.post("/v1/reactions", json={"kind": kind, "activity_id": act["id"], "feed": "user:alice"})
    params = {"with_own_reactions": "true", "with_recent_reactions": "true", "with_reaction_counts": "true"}
    [doc] = (await bob.get("/v1/feeds/user:alice/activities", params=params)).json()["results"]
    assert doc["reaction_counts"] == {"like": 2, "comment": 1}
    assert len(doc["latest_reactions"]["like"]) == 2 and len(doc["latest_reactions"]["comment"]) == 1
    assert {k: [r["user_id"] for r in v] for k, v in doc["own_reactions"].items()} == {
        "like": ["bob"],
        "comment": ["bob"],
    }
    getstream = {"withReactionCounts": "true", "reactionKindsFilter": "comment"}
    [doc] = (await bob.get("/v1/feeds/user:alice/activities", params=getstream)).json()["results"]
    assert doc["reaction_counts"] == {"comment": 1} and "own_reactions" not in doc
    [plain] = (await bob.get("/v1/feeds/user:alice/activities")).json()["results"]
    assert "reaction_counts" not in plain


async def test_reactions_are_live_and_resumable_change_events(server, alice, bob):
    """A reaction is a change of its activity's feed: pushed live and replayed on resume."""
    act = await _post(alice, "user:alice", audience=["members"])
    ws = await server.ws(server.token("bob", FEEDS))
    sub = await subscribe(ws, "user:alice")
    r = await alice.post("/v1/reactions", json={"kind": "like", "activity_id": act["id"], "feed": "user:alice"})
    event = await recv(ws)
    assert event["event"] == "reaction.added" and event["activity"]["id"] == act["id"]
    assert event["activity"]["reaction"]["id"] == r.json()["id"]
    await alice.delete(f"/v1/reactions/{r.json()['id']}")
    gone = await recv(ws)
    assert gone["event"] == "reaction.deleted" and gone["seq"] == event["seq"] + 1
    ws2 = await server.ws(server.token("bob", FEEDS))
    await subscribe(ws2, "user:alice", since={"seq": sub["seq"], "epoch": sub["epoch"]})
    replayed = [await recv(ws2), await recv(ws2)]
    assert [e["event"] for e in replayed] == ["reaction.added", "reaction.deleted"]
    # someone who cannot see the activity gets no reaction events for it
    stranger = await server.ws(server.token("eve", {"user:alice": ["read"]}))
    await subscribe(stranger, "user:alice", since={"seq": sub["seq"], "epoch": sub["epoch"]})
    await alice.post("/v1/reactions", json={"kind": "like", "activity_id": act["id"], "feed": "user:alice"})
    await _post(alice, "user:alice", audience=["everyone"], text="visible")
    first = await recv(stranger)
    assert first["event"] == "created" and first["activity"]["text"] == "visible"


async def test_users_collections_and_reference_enrichment(server, alice):
    """Users and collection objects CRUD; SU:/SO: references expand in reads; discard_actors drops actors."""
    admin = server.http(server.token("root", admin=True))
    r = await alice.post("/v1/users", json={"id": "alice", "data": {"name": "Alice"}})
    assert r.status_code == 201 and r.json()["data"] == {"name": "Alice"}
    assert (await alice.post("/v1/users", json={"id": "alice", "data": {}})).status_code == 409
    again = await alice.post("/v1/users", params={"get_or_create": "true"}, json={"id": "alice", "data": {}})
    assert again.status_code == 200 and again.json()["data"] == {"name": "Alice"}
    assert (await alice.post("/v1/users", json={"id": "bob", "data": {}})).status_code == 403
    r = await alice.put("/v1/users/alice", json={"data": {"name": "Alice B."}})
    assert r.json()["data"] == {"name": "Alice B."}
    food = await alice.post("/v1/collections/food", json={"id": "pizza", "data": {"name": "Pizza"}})
    assert food.status_code == 201 and food.json()["foreign_id"] == "food:pizza"
    assert (await alice.get("/v1/collections/food/pizza")).json()["data"] == {"name": "Pizza"}
    batch = await admin.post("/v1/collections", json={"data": {"food": [{"id": "pasta", "name": "Pasta"}]}})
    assert batch.status_code == 201 and batch.json()["data"]["food"][0]["data"] == {"name": "Pasta"}
    sel = await alice.get("/v1/collections", params={"foreign_ids": "food:pizza,food:pasta,food:none"})
    assert sorted(o["id"] for o in sel.json()["response"]["data"]) == ["pasta", "pizza"]

    await admin.post(
        "/v1/feeds/user:feed/activities",
        json={"actor": "SU:alice", "verb": "eat", "object": "SO:food:pizza", "audience": ["everyone"]},
    )
    await admin.post("/v1/feeds/user:feed/activities", json={"actor": "carl", "verb": "eat", "object": "x"})
    docs = (await admin.get("/v1/feeds/user:feed/activities")).json()["results"]
    assert docs[1]["actor"]["data"] == {"name": "Alice B."} and docs[1]["object"]["data"] == {"name": "Pizza"}
    kept = (await admin.get("/v1/feeds/user:feed/activities", params={"discard_actors": "carl"})).json()
    assert [d["verb"] for d in kept["results"]] == ["eat"] and kept["results"][0]["actor"]["id"] == "alice"
    sep = await admin.get(
        "/v1/feeds/user:feed/activities", params={"discard_actors": "x|alice", "discard_actors_sep": "|"}
    )
    assert [d["actor"]["id"] for d in sep.json()["results"]] == ["carl"]
    raw = (await admin.get("/v1/feeds/user:feed/activities", params={"enrich": "false"})).json()["results"]
    assert raw[1]["object"] == "SO:food:pizza"
    assert (await alice.delete("/v1/collections/food/pizza")).status_code == 204
    assert (await alice.get("/v1/collections/food/pizza")).status_code == 404
    assert (await alice.delete("/v1/users/alice")).status_code == 204
    assert (await alice.get("/v1/users/alice")).status_code == 404


async def _react(client: Any, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/reactions", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_children_counts_and_latest_children(server, alice, bob):
    """Reactions carry children_counts and latest_children (newest first, nested), in get, listings
    and enriched reads; counts follow adds, updates and deletes of children; own_children on demand;
    deleting a reaction deletes its children."""
    act = await _post(alice, "user:alice")
    parent = await _react(alice, kind="comment", activity_id=act["id"], feed="user:alice")
    assert parent["children_counts"] == {} and parent["latest_children"] == {}
    likes = [await _react(c, kind="like", parent=parent["id"]) for c in (alice, bob, alice)]
    reply = await _react(bob, kind="reply", parent=parent["id"], data={"t": "hi"})
    deep = await _react(alice, kind="like", parent=reply["id"])

    got = (await alice.get(f"/v1/reactions/{parent['id']}")).json()
    assert got["children_counts"] == {"like": 3, "reply": 1}
    assert [c["id"] for c in got["latest_children"]["like"]] == [r["id"] for r in reversed(likes)]
    [nested] = got["latest_children"]["reply"]
    assert nested["data"] == {"t": "hi"} and nested["children_counts"] == {"like": 1}
    assert [c["id"] for c in nested["latest_children"]["like"]] == [deep["id"]]
    assert "own_children" not in got
    own = (await bob.get(f"/v1/reactions/{parent['id']}", params={"with_own_children": "true"})).json()
    assert {k: [c["id"] for c in v] for k, v in own["own_children"].items()} == {
        "reply": [reply["id"]],
        "like": [likes[1]["id"]],
    }
    [listed] = (await alice.get("/v1/reactions", params={"activity_id": act["id"], "feed": "user:alice"})).json()[
        "results"
    ]
    assert listed == got
    params = {"with_recent_reactions": "true", "with_own_reactions": "true"}
    [doc] = (await alice.get("/v1/feeds/user:alice/activities", params=params)).json()["results"]
    assert doc["latest_reactions"]["comment"] == [got] and doc["own_reactions"]["comment"] == [got]

    # an update keeps the counts; deletes take them down, a kind with none left disappears
    r = await bob.put(f"/v1/reactions/{reply['id']}", json={"data": {"t": "edited"}})
    assert r.status_code == 200 and r.json()["children_counts"] == {"like": 1}
    assert (await alice.delete(f"/v1/reactions/{likes[0]['id']}")).status_code == 204
    got = (await alice.get(f"/v1/reactions/{parent['id']}")).json()
    assert got["children_counts"] == {"like": 2, "reply": 1}
    assert got["latest_children"]["reply"][0]["data"] == {"t": "edited"}
    assert [c["id"] for c in got["latest_children"]["like"]] == [likes[2]["id"], likes[1]["id"]]
    # deleting the reply deletes its own child too
    assert (await bob.delete(f"/v1/reactions/{reply['id']}")).status_code == 204
    assert (await alice.get(f"/v1/reactions/{deep['id']}")).status_code == 404
    got = (await alice.get(f"/v1/reactions/{parent['id']}")).json()
    assert got["children_counts"] == {"like": 2} and set(got["latest_children"]) == {"like"}
    mine = (await alice.get("/v1/reactions", params={"user_id": "alice"})).json()["results"]
    assert deep["id"] not in [r["id"] for r in mine]
    # deleting the parent deletes every child, counts included
    assert (await alice.delete(f"/v1/reactions/{parent['id']}")).status_code == 204
    for child in likes[1:]:
        assert (await alice.get(f"/v1/reactions/{child['id']}")).status_code == 404
    assert (await bob.get("/v1/reactions", params={"user_id": "bob"})).json()["results"] == []
    async with _redis(server) as r:
        assert await r.hgetall(f"{server.settings.redis.key_prefix}{{user:alice}}:rxh") == {}


class _redis:
    """A direct Redis client on the test server's Redis (cluster-aware)."""

    def __init__(self, server: Any) -> None:
        from conftest import redis_client

        self.client = redis_client(server.settings.redis.url)

    async def __aenter__(self) -> Any:
        return self.client

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.aclose()


async def _reaction_keys(server: Any, feed: str) -> list[bytes]:
    prefix = server.settings.redis.key_prefix
    async with _redis(server) as r:
        pattern = f"{prefix}{{{feed}}}:rx*"
        return sorted([k async for k in r.scan_iter(match=pattern)])


async def test_reactions_go_with_their_activity(server, alice, bob):
    """Deleting an activity (by id or by foreign_id) deletes its reactions, their children, every
    index and count of them, and the activities they made in target feeds."""
    admin = server.http(server.token("root", admin=True))
    for how in ("id", "foreign_id"):
        act = await _post(alice, "user:alice", foreign_id=f"post:{how}")
        like = await _react(bob, kind="like", activity_id=act["id"], feed="user:alice")
        note = await _react(admin, kind="comment", activity_id=act["id"], feed="user:alice", user_id="bob")
        child = await _react(alice, kind="like", parent=like["id"])
        shared = await _react(bob, kind="share", activity_id=act["id"], feed="user:alice", target_feeds=["user:bob"])
        [made] = (await bob.get("/v1/feeds/user:bob/activities")).json()["results"]
        assert made["foreign_id"] == f"SR:{shared['id']}"
        assert await _reaction_keys(server, "user:alice") != []
        if how == "id":
            assert (await alice.delete(f"/v1/feeds/user:alice/activities/{act['id']}")).status_code == 204
        else:
            r = await alice.delete("/v1/feeds/user:alice/activities", params={"foreign_id": f"post:{how}"})
            assert r.json()["removed"] == 1
        for reaction in (like, note, child, shared):
            assert (await bob.get(f"/v1/reactions/{reaction['id']}")).status_code == 404
        assert (await bob.get("/v1/reactions", params={"user_id": "bob"})).json()["results"] == []
        assert (await alice.get("/v1/reactions", params={"user_id": "alice"})).json()["results"] == []
        assert (await bob.get("/v1/feeds/user:bob/activities")).json()["results"] == []
        assert await _reaction_keys(server, "user:alice") == []
        prefix = server.settings.redis.key_prefix
        async with _redis(server) as r:
            for reaction in (like, note, child, shared):
                assert await r.exists(f"{prefix}{{rx:{reaction['id']}}}") == 0
            assert await r.zcard(f"{prefix}{{rxuser:bob}}") == 0
            assert await r.hlen(f"{prefix}{{rxuser:bob}}:feeds") == 0


async def test_reactions_go_when_the_websocket_deletes_their_activity(server, alice, bob):
    """The service runs the reaction cleanup for every API: a delete sent over the WebSocket (by id
    and by foreign_id) removes the reactions at once, before any read meets them."""
    for how in ("id", "foreign_id"):
        act = await _post(alice, "user:alice", foreign_id=f"ws:{how}")
        await _react(bob, kind="like", activity_id=act["id"], feed="user:alice")
        assert await _reaction_keys(server, "user:alice") != []
        ws = await server.ws(server.token("alice", FEEDS))
        target = {"id": act["id"]} if how == "id" else {"foreign_id": f"ws:{how}"}
        await ws.send(orjson.dumps({"type": "delete", "ref": 1, "feed": "user:alice", **target}).decode())
        ack = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "ack" and ack["removed"] == 1
        await ws.close()
        assert await _reaction_keys(server, "user:alice") == []


async def test_reactions_of_an_activity_gone_another_way_are_hidden_and_cleaned(server, alice, bob):
    """An activity removed without the API's delete (trimmed, a dialect): its reactions are never
    answered again, and the first read that meets them cleans them up."""
    act = await _post(alice, "user:alice")
    like = await _react(bob, kind="like", activity_id=act["id"], feed="user:alice")
    child = await _react(bob, kind="reply", parent=like["id"])
    await server.app.service.store.delete("user:alice", [act["id"]], actor="", may_override=True)
    assert await _reaction_keys(server, "user:alice") != []
    assert (await bob.get("/v1/reactions", params={"user_id": "bob"})).json()["results"] == []
    assert await _reaction_keys(server, "user:alice") == []
    assert (await bob.get(f"/v1/reactions/{like['id']}")).status_code == 404
    assert (await bob.get(f"/v1/reactions/{child['id']}")).status_code == 404


async def test_enriched_read_matches_a_reference_built_from_listings(server, alice, bob):
    """An enriched timeline read (copies, references, every flag, a kind filter) equals the plain
    read with each activity's reaction fields assembled from the reaction listing endpoints."""
    admin = server.http(server.token("root", admin=True))
    await alice.post("/v1/users", json={"id": "alice", "data": {"name": "Alice"}})
    src = "user:src"
    posts = []
    for i in range(6):
        actor = "SU:alice" if i % 2 else "alice"
        r = await admin.post(
            f"/v1/feeds/{src}/activities",
            json={"actor": actor, "verb": "post", "object": f"o:{i}", "audience": ["everyone"]},
        )
        posts.append(r.json()["activities"][0])
    r = await admin.post("/v1/feeds/timeline:bob/follows", json={"target": src, "activity_copy_limit": 10})
    assert r.status_code in (200, 201), r.text
    for i, post in enumerate(posts[:5]):
        for j in range(i):
            who = alice if j % 2 else bob
            made = await _react(who, kind=("like", "comment", "share")[j % 3], activity_id=post["id"], feed=src)
            if j == 1:
                await _react(alice, kind="like", parent=made["id"])
    timeline = "/v1/feeds/timeline:bob/activities"
    bob_reader = server.http(server.token("bob", {"timeline:bob": ["read"], "user:*": ["read"]}))
    for _ in range(100):
        plain = (await bob_reader.get(timeline, params={"limit": 10})).json()["results"]
        if len(plain) == 6:
            break
        await asyncio.sleep(0.05)
    assert len(plain) == 6

    async def listing(aid: str, limit: int, kind: str = "") -> list[dict[str, Any]]:
        params = {"activity_id": aid, "feed": src, "limit": limit, **({"kind": kind} if kind else {})}
        return (await admin.get("/v1/reactions", params=params)).json()["results"]

    async def compare(kinds: tuple[str, ...], recent: int) -> None:
        expected = []
        for doc in plain:
            everything = await listing(doc["id"], 100)
            shown = [k for k in dict.fromkeys(r["kind"] for r in reversed(everything)) if not kinds or k in kinds]
            counts = {k: sum(r["kind"] == k for r in everything) for k in shown}
            own: dict[str, list[Any]] = {}
            for r in everything:
                if r["user_id"] == "bob" and (not kinds or r["kind"] in kinds) and len(own.get(r["kind"], [])) < recent:
                    own.setdefault(r["kind"], []).append(r)
            latest = {k: await listing(doc["id"], recent, k) for k in shown}
            expected.append({**doc, "reaction_counts": counts, "latest_reactions": latest, "own_reactions": own})
        params = {
            "limit": 10,
            "with_own_reactions": "true",
            "with_recent_reactions": "true",
            "with_reaction_counts": "true",
            "recent_reactions_limit": recent,
            **({"reaction_kinds": ",".join(kinds)} if kinds else {}),
        }
        enriched = (await bob_reader.get(timeline, params=params)).json()["results"]
        assert enriched == expected
        assert [list(d) for d in enriched] == [list(d) for d in expected]  # same field order too

    for kinds, recent in (((), 10), (("like", "comment"), 2), ((), 10)):
        await compare(kinds, recent)
    # every change of an activity's reactions shows in the next read (no stale cached part)
    [first, *_] = await listing(posts[4]["id"], 10, "comment")
    await _react(bob, kind="reply", parent=first["id"])
    await compare((), 10)
    assert (await alice.put(f"/v1/reactions/{first['id']}", json={"data": {"edited": True}})).status_code == 200
    await compare((), 10)
    [like, *_] = await listing(posts[3]["id"], 10, "like")
    assert (await bob.delete(f"/v1/reactions/{like['id']}")).status_code == 204
    await compare((), 10)
    await _react(alice, kind="like", activity_id=posts[5]["id"], feed=src)
    await compare((), 10)
    assert any(isinstance(d["actor"], dict) and d["actor"].get("data") == {"name": "Alice"} for d in plain)
