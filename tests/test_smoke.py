"""End-to-end smoke: write over HTTP and WebSocket, see it live and in history."""

from __future__ import annotations

from conftest import recv, send, subscribe


async def test_http_write_arrives_live_and_in_history(server):
    """A POSTed activity is pushed to a subscriber and listed by GET."""
    alice = server.token("alice", {"room:*": ["read", "write", "member"]}, name="Alice A")
    ws = await server.ws(alice)
    sub = await subscribe(ws, "room:1")
    assert sub["seq"] == 0 and sub["epoch"]
    http = server.http(alice)
    r = await http.post("/v1/feeds/room:1/activities", json={"verb": "post", "object": "note:1", "text": "hi"})
    assert r.status_code == 201, r.text
    stored = r.json()["activities"][0]
    event = await recv(ws)
    assert event["type"] == "activity" and event["event"] == "created" and event["seq"] == 1
    assert event["activity"] == stored
    assert stored["actor"] == {"id": "alice", "name": "Alice A"}
    page = (await http.get("/v1/feeds/room:1/activities")).json()
    assert page["results"] == [stored] and page["next"] is None


async def test_ws_publish_acks_and_pushes(server):
    """A WebSocket publish is acknowledged with the stored activity and pushed to subscribers."""
    bob = server.token("bob", {"room:*": ["read", "write", "member"]})
    watcher = await server.ws(bob)
    await subscribe(watcher, "room:2")
    writer = await server.ws(bob, auth="header")
    await send(writer, {"type": "publish", "ref": "r1", "feed": "room:2", "activity": {"verb": "v", "object": "o"}})
    ack = await recv(writer)
    assert ack["type"] == "ack" and ack["ref"] == "r1" and len(ack["activities"]) == 1
    event = await recv(watcher)
    assert event["activity"]["id"] == ack["activities"][0]["id"]
