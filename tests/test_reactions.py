"""Reactions, users and collections (SPEC §12) against the real server: CRUD, listings, enriched
reads, live and resumable reaction events, reference expansion and GDPR actor discarding."""

from __future__ import annotations

from typing import Any

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
