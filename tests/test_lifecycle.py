"""Updates, partial updates and deletes (SPEC §2/§4), each pushed live to the right subscribers."""

from __future__ import annotations

import asyncio

import pytest
from conftest import nothing_more, recv, send, subscribe

FEED = "booking:f4d1"
RIGHTS = {"booking:*": ["read", "write", "member"]}
BASE = {
    "verb": "comment.add",
    "object": "c:1",
    "text": "original",
    "foreign_id": "comment:1",
    "time": "2026-01-14T09:30:00Z",
    "course": "c1",
}


@pytest.fixture
async def alice(server):
    return server.http(server.token("alice", RIGHTS, name="Alice"))


async def create(http, body=None, feed=FEED):
    r = await http.post(f"/v1/feeds/{feed}/activities", json=body or BASE)
    assert r.status_code == 201, r.text
    return r.json()["activities"][0]


def url(activity_id, feed=FEED):
    return f"/v1/feeds/{feed}/activities/{activity_id}"


async def test_put_replaces_and_keeps_server_fields(alice):
    """PUT replaces the content; id/created_at stay, version and updated_at move, ETag follows."""
    a = await create(alice)
    r = await alice.put(
        url(a["id"]),
        json={"verb": "comment.edit", "object": "c:1", "text": "edited", "seq": 99, "created_at": "x", "feed": "other"},
    )
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["id"] == a["id"] and b["created_at"] == a["created_at"] and b["feed"] == FEED
    assert b["version"] == 2 and b["seq"] == 2 and b["updated_at"] >= a["updated_at"]
    assert b["text"] == "edited" and "course" not in b and "foreign_id" not in b
    assert b["actor"] == a["actor"] and b["time"] == a["time"] and b["audience"] == a["audience"]
    assert r.headers["etag"] == '"2"'
    got = await alice.get(url(a["id"]))
    assert got.json() == b and got.headers["etag"] == '"2"'


async def test_if_match_and_body_version(alice):
    """A stale If-Match (or body version) is 412 with the current version; a fresh one passes."""
    a = await create(alice)
    stale = await alice.put(url(a["id"]), json={**BASE, "text": "x"}, headers={"If-Match": '"7"'})
    assert stale.status_code == 412 and stale.json()["version"] == 1
    assert stale.headers["content-type"] == "application/problem+json"
    ok = await alice.put(url(a["id"]), json={**BASE, "text": "y"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.json()["version"] == 2
    assert (await alice.put(url(a["id"]), json={**BASE, "version": 1})).status_code == 412
    assert (await alice.put(url(a["id"]), json={**BASE, "version": 2})).status_code == 200
    assert (await alice.put(url(a["id"]), json=BASE, headers={"If-Match": "garbage"})).status_code == 400
    assert (await alice.put(url(a["id"]), json={**BASE, "id": "other"})).status_code == 422


async def test_put_moves_time_and_foreign_id_indexes(alice):
    """A replacement with a new (foreign_id, time) is found by the new pair, not the old one."""
    a = await create(alice)
    moved = {**BASE, "foreign_id": "comment:2", "time": "2026-01-15T00:00:00Z"}
    assert (await alice.put(url(a["id"]), json=moved)).status_code == 200
    again_old = await create(alice)  # the old pair is free again: a new activity
    assert again_old["id"] != a["id"] and again_old["version"] == 1
    upsert_new = await create(alice, {**moved, "text": "via upsert"})
    assert upsert_new["id"] == a["id"] and upsert_new["version"] == 3
    # moving onto a pair another activity holds is a conflict
    assert (await alice.put(url(again_old["id"]), json=moved)).status_code == 409


async def test_patch_set_unset_rules(alice):
    """PATCH applies dotted set/unset and refuses what SPEC §4 refuses."""
    a = await create(
        alice,
        {**BASE, "template_data": {"user": {"name": "U"}}, "template": "{{user.name}} hi", "target": {"id": "t1"}},
    )
    r = await alice.patch(
        url(a["id"]),
        json={
            "set": {"text": "new", "template_data.user.name": "V", "target.sub_id": "s1", "extra": {"k": 1}},
            "unset": ["course"],
        },
    )
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["text"] == "new" and b["template_data"] == {"user": {"name": "V"}} and b["extra"] == {"k": 1}
    assert b["target"] == {"id": "t1", "sub_id": "s1"} and "course" not in b and b["version"] == 2
    bad = [
        ({"set": {"missing.child": 1}}, 422),  # parent must exist
        ({"unset": ["nope"]}, 422),  # unset path must exist
        ({"set": {f"k{i}": i for i in range(26)}}, 422),
        ({"unset": [f"k{i}" for i in range(26)]}, 422),
        ({"set": {"score": 1}}, 422),
        ({"set": {"version": 5}}, 422),
        ({"unset": ["id"]}, 422),
        ({"set": {"extra.k": 2}, "unset": ["extra"]}, 422),
        ({"set": {"text": "a"}, "unset": ["text"]}, 422),
        ({"unset": ["verb"]}, 422),  # the result must still be a valid activity
        ({"set": {"attachments": [{"type": "gif"}]}}, 422),
        ({}, 422),
        ({"set": {"text": "x" * 11_000}}, 413),
        ({"set": {"actor": {"id": "mallory"}}}, 403),
    ]
    for patch, status in bad:
        r = await alice.patch(url(a["id"]), json=patch)
        assert r.status_code == status, (patch, r.text)
    assert (await alice.get(url(a["id"]))).json()["version"] == 2  # nothing above changed it


async def test_delete_by_id_and_by_foreign_id(server, alice):
    """DELETE by id → 204 then 404; by foreign_id removes every activity with it → {removed: n}."""
    a = await create(alice)
    assert (await alice.delete(url(a["id"]))).status_code == 204
    assert (await alice.get(url(a["id"]))).status_code == 404
    assert (await alice.delete(url(a["id"]))).status_code == 404
    for t in ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"):
        await create(alice, {**BASE, "foreign_id": "dup", "time": t})
    await create(alice, {**BASE, "foreign_id": "other"})
    r = await alice.delete(f"/v1/feeds/{FEED}/activities", params={"foreign_id": "dup"})
    assert r.json() == {"removed": 3}
    left = (await alice.get(f"/v1/feeds/{FEED}/activities")).json()["results"]
    assert [x["foreign_id"] for x in left] == ["other"]
    assert (await alice.delete(f"/v1/feeds/{FEED}/activities")).status_code == 422


async def test_only_author_or_admin_changes(server, alice):
    """Others get 403 on activities they can see and 404 on ones they cannot; admins may."""
    shared = await create(alice, {**BASE, "audience": ["members"]})
    private = await create(alice, {**BASE, "foreign_id": "p", "audience": []})
    bob = server.http(server.token("bob", RIGHTS))
    for method, extra in (("put", {"json": BASE}), ("patch", {"json": {"set": {"text": "b"}}}), ("delete", {})):
        assert (await getattr(bob, method)(url(shared["id"]), **extra)).status_code == 403, method
        assert (await getattr(bob, method)(url(private["id"]), **extra)).status_code == 404, method
    assert (await bob.delete(f"/v1/feeds/{FEED}/activities", params={"foreign_id": "comment:1"})).status_code == 403
    assert (await bob.delete(f"/v1/feeds/{FEED}/activities", params={"foreign_id": "p"})).json() == {"removed": 0}
    reader = server.http(server.token("rita", {"booking:*": ["read"]}))
    assert (await reader.patch(url(shared["id"]), json={"set": {"text": "r"}})).status_code == 403
    admin = server.http(server.token("boss", {"booking:*": ["admin"]}))
    r = await admin.patch(url(private["id"]), json={"set": {"text": "moderated"}})
    assert r.status_code == 200 and r.json()["actor"]["id"] == "alice"
    assert (await admin.delete(url(shared["id"]))).status_code == 204


async def test_batch_update_by_foreign_id_and_time(server, alice):
    """POST /v1/activities/update replaces by (feed, foreign_id, time) and reports each item."""
    a = await create(alice)
    b = await create(alice, {**BASE, "foreign_id": "comment:2"})
    r = await alice.post(
        "/v1/activities/update",
        json={
            "activities": [
                {**BASE, "feed": FEED, "text": "one"},
                {**BASE, "feed": FEED, "foreign_id": "comment:2", "text": "two"},
                {**BASE, "feed": FEED, "foreign_id": "missing"},
                {**BASE, "feed": "elsewhere:1"},
                {"feed": FEED, "verb": "v", "object": "o"},
                {**BASE, "feed": FEED, "verb": ""},
            ]
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    statuses = [x["status"] for x in body["results"]]
    assert statuses == [200, 200, 404, 403, 422, 422] and body["succeeded"] == 2 and body["failed"] == 4
    assert body["results"][0]["activity"]["id"] == a["id"] and body["results"][0]["activity"]["text"] == "one"
    assert body["results"][1]["activity"]["id"] == b["id"] and body["results"][1]["activity"]["version"] == 2
    assert body["results"][2]["error"]["status"] == 404
    too_many = [{**BASE, "feed": FEED}] * 101
    assert (await alice.post("/v1/activities/update", json={"activities": too_many})).status_code == 413
    assert (await alice.post("/v1/activities/update", json={"activities": []})).status_code == 422


async def test_batch_partial_update_by_id_or_foreign_id(alice):
    """POST /v1/activities/partial-update accepts feed+id or feed+foreign_id+time per change."""
    a = await create(alice)
    b = await create(alice, {**BASE, "foreign_id": "comment:2"})
    r = await alice.post(
        "/v1/activities/partial-update",
        json={
            "changes": [
                {"feed": FEED, "id": a["id"], "set": {"text": "by id"}},
                {
                    "feed": FEED,
                    "foreign_id": "comment:2",
                    "time": BASE["time"],
                    "set": {"text": "by fid"},
                    "unset": ["course"],
                },
                {"feed": FEED, "id": "nope", "set": {"text": "x"}},
                {"id": a["id"], "set": {"text": "no feed"}},
                {"feed": FEED, "id": a["id"], "set": {"seq": 3}},
            ]
        },
    )
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 200, 404, 422, 422]
    assert results[0]["activity"]["text"] == "by id"
    assert results[1]["activity"]["id"] == b["id"] and "course" not in results[1]["activity"]


async def test_ws_update_patch_delete(server):
    """The WebSocket commands behave like the HTTP calls and answer with acks or errors."""
    token = server.token("alice", RIGHTS)
    ws = await server.ws(token)
    await send(ws, {"type": "publish", "ref": 1, "feed": FEED, "activity": BASE})
    a = (await recv(ws))["activities"][0]
    await send(
        ws, {"type": "update", "ref": 2, "feed": FEED, "id": a["id"], "activity": {**BASE, "text": "u"}, "version": 1}
    )
    ack = await recv(ws)
    assert ack["ref"] == 2 and ack["activities"][0]["version"] == 2
    await send(ws, {"type": "patch", "ref": 3, "feed": FEED, "id": a["id"], "set": {"text": "p"}, "version": 1})
    error = await recv(ws)
    assert error["type"] == "error" and error["code"] == "precondition_failed" and error["version"] == 2
    await send(ws, {"type": "patch", "ref": 4, "feed": FEED, "id": a["id"], "set": {"text": "p"}})
    assert (await recv(ws))["activities"][0]["text"] == "p"
    await send(ws, {"type": "delete", "ref": 5, "feed": FEED, "id": a["id"]})
    assert await recv(ws) == {"type": "ack", "ref": 5, "removed": 1, "activities": []}
    await send(ws, {"type": "delete", "ref": 6, "feed": FEED, "id": a["id"]})
    assert (await recv(ws))["code"] == "not_found"
    await send(ws, {"type": "delete", "ref": 7, "feed": FEED})
    assert (await recv(ws))["code"] == "invalid"


async def test_live_updated_and_deleted_events_in_seq_order(server, alice):
    """Subscribers see created, updated, deleted in seq order; deleted carries the id."""
    ws = await server.ws(server.token("watcher", RIGHTS))
    await subscribe(ws, FEED)
    a = await create(alice)
    await alice.patch(url(a["id"]), json={"set": {"text": "p"}})
    await alice.put(url(a["id"]), json={**BASE, "text": "u"})
    await alice.delete(url(a["id"]))
    events = [await recv(ws) for _ in range(4)]
    assert [(e["event"], e["seq"]) for e in events] == [("created", 1), ("updated", 2), ("updated", 3), ("deleted", 4)]
    assert events[1]["activity"]["text"] == "p" and events[2]["activity"]["version"] == 3
    assert events[3]["activity"]["id"] == a["id"] and events[3]["activity"]["foreign_id"] == "comment:1"
    await nothing_more(ws)


async def test_audience_changes_reach_losers_and_gainers(server, alice):
    """An update that changes the audience is `deleted` for those who lose sight and `created` for gainers."""
    feed_rights = {"booking:*": ["read"]}
    member = await server.ws(server.token("m", RIGHTS))
    target = await server.ws(server.token("u-7", feed_rights))
    stranger = await server.ws(server.token("s", feed_rights))
    for ws in (member, target, stranger):
        await subscribe(ws, FEED)
    a = await create(alice, {**BASE, "audience": ["members"]})
    assert (await recv(member))["event"] == "created"
    await alice.patch(url(a["id"]), json={"set": {"audience": ["identity:u-7"]}})
    lost = await recv(member)
    assert lost["event"] == "deleted" and lost["activity"] == {
        "id": a["id"],
        "foreign_id": "comment:1",
        "time": a["time"],
    }
    gained = await recv(target)
    assert gained["event"] == "created" and gained["activity"]["text"] == "original"
    await alice.patch(url(a["id"]), json={"set": {"text": "again"}})
    assert (await recv(target))["event"] == "updated"
    await alice.delete(url(a["id"]))
    assert (await recv(target))["event"] == "deleted"
    for ws in (member, stranger):  # the deletion goes only to those who could see it
        await nothing_more(ws)


async def test_concurrent_puts_with_the_same_if_match(server, alice):
    """N concurrent PUTs with the same If-Match: exactly one succeeds, the others get 412."""
    a = await create(alice)
    clients = [server.http(server.token("alice", RIGHTS)) for _ in range(10)]
    results = await asyncio.gather(
        *(
            c.put(url(a["id"]), json={**BASE, "text": f"w{i}"}, headers={"If-Match": '"1"'})
            for i, c in enumerate(clients)
        )
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [412] * 9
    final = (await alice.get(url(a["id"]))).json()
    assert final["version"] == 2


async def test_concurrent_patches_without_if_match_all_apply(server, alice):
    """Without If-Match, concurrent patches to different fields are all applied (retried on races)."""
    a = await create(alice)
    clients = [server.http(server.token("alice", RIGHTS)) for _ in range(8)]
    results = await asyncio.gather(*(c.patch(url(a["id"]), json={"set": {f"f{i}": i}}) for i, c in enumerate(clients)))
    assert all(r.status_code == 200 for r in results), [r.text for r in results if r.status_code != 200]
    final = (await alice.get(url(a["id"]))).json()
    assert final["version"] == 9 and all(final[f"f{i}"] == i for i in range(8))
