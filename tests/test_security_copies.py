"""Editing `to`/notification copies (issue 13, item 7): an edit of a copy edits its original."""

from __future__ import annotations

from conftest import recv, subscribe

FEED = "booking:f4d1"
WRITER = {"booking:*": ["read", "write", "member"], "team:*": ["read", "write"]}
BODY = {"verb": "v", "object": "o", "text": "first", "to": ["team:a"], "audience": ["everyone"]}


async def _posted(server):
    alice = server.http(server.token("alice", WRITER))
    r = await alice.post(f"/v1/feeds/{FEED}/activities", json=BODY)
    assert r.status_code == 201
    return alice, r.json()["activities"][0]


async def test_patch_of_a_copy_edits_the_original_and_the_copy_follows(server):
    """PATCH addressed to a copy: 200, the original changes, the copy keeps its origin and follows; `to` is ignored."""
    alice, original = await _posted(server)
    watcher = await server.ws(server.token("w", {"booking:*": ["read"], "team:*": ["read"]}))
    await subscribe(watcher, FEED)
    r = await alice.patch(
        f"/v1/feeds/team:a/activities/{original['id']}", json={"set": {"text": "edited", "to": ["team:b"]}}
    )
    assert r.status_code == 200, r.text
    copy = r.json()
    assert copy["feed"] == "team:a" and copy["origin"] == FEED and copy["text"] == "edited"
    event = await recv(watcher)
    assert (event["feed"], event["event"], event["activity"]["text"]) == (FEED, "updated", "edited")
    stored = (await alice.get(f"/v1/feeds/{FEED}/activities/{original['id']}")).json()
    assert stored["text"] == "edited" and stored["to"] == ["team:a"] and stored["version"] == 2
    r = await alice.get("/v1/feeds/team:b/activities")
    assert r.json()["results"] == []  # `to` did not change through the copy


async def test_put_of_a_copy_does_not_detach_it(server):
    """PUT addressed to a copy replaces the original's content; the copy keeps its origin, `to` stays."""
    alice, original = await _posted(server)
    url = f"/v1/feeds/team:a/activities/{original['id']}"
    r = await alice.put(url, json={"verb": "v2", "object": "o", "text": "replaced", "audience": ["everyone"]})
    assert r.status_code == 200, r.text
    assert r.json()["origin"] == FEED and r.json()["text"] == "replaced"
    stored = (await alice.get(f"/v1/feeds/{FEED}/activities/{original['id']}")).json()
    assert stored["text"] == "replaced" and stored["verb"] == "v2" and stored["to"] == ["team:a"]
    copy = (await alice.get(url)).json()
    assert copy["origin"] == FEED and copy["verb"] == "v2"


async def test_editing_a_copy_needs_rights_on_the_original(server):
    """An admin of the copy's feed without rights on the origin feed may not edit through the copy."""
    alice, original = await _posted(server)
    team_admin = server.http(server.token("t", {"team:*": ["admin"]}))
    url = f"/v1/feeds/team:a/activities/{original['id']}"
    assert (await team_admin.patch(url, json={"set": {"text": "hijack"}})).status_code == 403
    assert (await team_admin.put(url, json={"verb": "v", "object": "o", "text": "hijack"})).status_code == 403
    stored = (await alice.get(f"/v1/feeds/{FEED}/activities/{original['id']}")).json()
    assert stored["text"] == "first" and stored["version"] == 1
