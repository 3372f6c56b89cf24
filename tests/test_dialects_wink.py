"""Wink style (SPEC §8): /api/activity-stream on our activity model, answered in Wink's shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import recv, subscribe

ENTITY = "f4d1c8e5-2b9a-4f3d-9e7c-1b6a5d3f8c92"
FEED = f"entity:{ENTITY}"
RIGHTS = {"entity:*": ["read", "write", "member"]}
V2 = {"Wink-Version": "2.0"}
#: The example request of Wink's "Create activity stream entry" reference (academy.wink.travel).
EXAMPLE = {
    "acl": "EVERYONE",
    "entityIdentifier": ENTITY,
    "eventDate": "2026-01-14T09:30:00",
    "emotion": "fire",
    "comment": "Booking confirmed and payment processed successfully!",
    "i18nKey": "ACTIVITY.BOOKING_CONFIRMED",
    "attachmentId": "invoice-2026-001.pdf",
    "user": {"userIdentifier": "user-1", "name": "Jane Doe"},
}


@pytest.fixture
async def jane(server):
    """user-1, a writer/member of every entity feed, with a profile picture in the token."""
    return server.http(server.token("user-1", RIGHTS, name="Jane Doe", picture="https://img/j.png"))


def assert_problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return r.json()


async def create(http, body=None, **headers):
    r = await http.post("/api/activity-stream", json=body or EXAMPLE, headers={**V2, **headers})
    assert r.status_code == 201, r.text
    return r.json()


async def test_create_with_winks_example_answers_a_wink_entry(jane):
    """Wink's own example → 201 with id/createdDate/lastUpdate/version and every field in Wink's shape."""
    entry = await create(jane)
    assert set(entry) == {
        "id",
        "createdDate",
        "lastUpdate",
        "version",
        "acl",
        "entityIdentifier",
        "eventDate",
        "emotion",
        "comment",
        "i18nKey",
        "attachmentId",
        "user",
    }
    assert entry["version"] == 1 and entry["createdDate"] == entry["lastUpdate"]
    assert {k: entry[k] for k in ("acl", "entityIdentifier", "emotion", "comment", "i18nKey", "attachmentId")} == {
        k: EXAMPLE[k] for k in ("acl", "entityIdentifier", "emotion", "comment", "i18nKey", "attachmentId")
    }
    assert entry["eventDate"] == "2026-01-14T09:30:00.000Z"
    assert entry["user"] == {"userIdentifier": "user-1", "name": "Jane Doe", "profilePictureUrl": "https://img/j.png"}


async def test_the_entry_is_one_native_activity(jane):
    """The same write is readable through the native API, mapped field by field (SPEC §8)."""
    entry = await create(jane)
    r = await jane.get(f"/v1/feeds/{FEED}/activities/{entry['id']}")
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["feed"] == FEED and a["verb"] == "ACTIVITY.BOOKING_CONFIRMED"
    assert a["object"] == {"id": ENTITY, "type": "entity"}
    assert a["actor"] == {"id": "user-1", "name": "Jane Doe", "avatar": "https://img/j.png"}
    assert a["time"] == "2026-01-14T09:30:00.000Z" and a["audience"] == [{"type": "everyone"}]
    assert a["text"] == EXAMPLE["comment"] and a["i18n_key"] == EXAMPLE["i18nKey"] and a["emotion"] == "fire"
    assert a["attachments"] == [{"type": "file", "id": "invoice-2026-001.pdf"}]
    assert a["created_at"] == entry["createdDate"] and a["version"] == entry["version"]


async def test_user_and_event_date_default_from_token_and_now(jane):
    """Without user the token's sub/name/picture are the user; without eventDate it is now; comment → verb comment."""
    before = datetime.now(UTC).replace(microsecond=0)
    body = {"acl": "MEMBERS", "entityIdentifier": "booking-1", "comment": "I am all fired up!", "emotion": "fire"}
    entry = await create(jane, body)
    assert entry["user"] == {"userIdentifier": "user-1", "name": "Jane Doe", "profilePictureUrl": "https://img/j.png"}
    assert datetime.fromisoformat(entry["eventDate"]) >= before and "i18nKey" not in entry
    a = (await jane.get(f"/v1/feeds/entity:booking-1/activities/{entry['id']}")).json()
    assert a["verb"] == "comment" and a["audience"] == [{"type": "members"}]
    blank = await create(jane, {**body, "eventDate": "", "i18nKey": "", "attachmentId": ""})  # "" = not given
    assert "attachmentId" not in blank and "i18nKey" not in blank


@pytest.mark.parametrize(
    ("acl", "audience", "back"),
    [
        ("EVERYONE", [{"type": "everyone"}], "EVERYONE"),
        ("PUBLIC", [{"type": "public"}], "PUBLIC"),
        ("MEMBERS", [{"type": "members"}], "MEMBERS"),
        ("PRIVATE", [], "PRIVATE"),
        ("AUTHENTICATED", [{"type": "everyone"}], "EVERYONE"),
        ("OWNER", [], "PRIVATE"),
    ],
)
async def test_acl_maps_to_audience(jane, acl, audience, back):
    """acl EVERYONE/PUBLIC/MEMBERS/PRIVATE (and Wink's AUTHENTICATED/OWNER) → audience, and back."""
    entry = await create(jane, {**EXAMPLE, "acl": acl})
    assert entry["acl"] == back
    a = (await jane.get(f"/v1/feeds/{FEED}/activities/{entry['id']}")).json()
    assert a["audience"] == audience


async def test_private_is_only_the_author(server, jane):
    """PRIVATE: the author and feed admins see it; another member of the feed gets 404."""
    entry = await create(jane, {**EXAMPLE, "acl": "PRIVATE"})
    url = f"/v1/feeds/{FEED}/activities/{entry['id']}"
    bob = server.http(server.token("bob", RIGHTS))
    admin = server.http(server.token("root", {"entity:*": ["admin"]}))
    assert (await jane.get(url)).status_code == 200
    assert (await bob.get(url)).status_code == 404
    assert (await admin.get(url)).status_code == 200
    listed = (await bob.get(f"/api/activity-stream/{ENTITY}/list", headers=V2)).json()
    assert listed == []


@pytest.mark.parametrize(
    ("change", "locs"),
    [
        ({"acl": None}, {"acl"}),
        ({"acl": "SOMETIMES"}, {"acl"}),
        ({"entityIdentifier": None}, {"entityIdentifier"}),
        ({"entityIdentifier": "has spaces"}, {"entityIdentifier"}),
        ({"comment": None, "i18nKey": None}, {"comment", "i18nKey"}),
        ({"comment": "", "i18nKey": ""}, {"comment", "i18nKey"}),
        ({"eventDate": "yesterday"}, {"eventDate"}),
        ({"user": {"name": "No Id"}}, {"user.userIdentifier"}),
        ({"user": "user-1"}, {"user"}),
        ({"verb": "sneaky"}, {"verb"}),
        ({"emotion": "x" * 65}, {"emotion"}),
        ({"i18nKey": "K" * 300}, {"i18nKey"}),
    ],
)
async def test_invalid_fields_are_422_in_winks_names(jane, change, locs):
    """Missing/bad fields → 422 problem whose errors name Wink's fields, not ours."""
    body = {k: v for k, v in {**EXAMPLE, **change}.items() if v is not None}
    r = await jane.post("/api/activity-stream", json=body, headers=V2)
    problem = assert_problem(r, 422)
    assert locs <= {e["loc"] for e in problem["errors"]}, problem


async def test_wink_version_header(jane):
    """Wink-Version 2.0 / 2.0.0 / absent (Wink's default) are served; any other value is a 400 problem."""
    assert (await jane.post("/api/activity-stream", json=EXAMPLE)).status_code == 201
    assert (await jane.post("/api/activity-stream", json=EXAMPLE, headers={"Wink-Version": "2.0.0"})).status_code == 201
    for bad in ("3.0", "1.0", "latest"):
        problem = assert_problem(
            await jane.post("/api/activity-stream", json=EXAMPLE, headers={"Wink-Version": bad}), 400
        )
        assert "Wink-Version" in problem["detail"] and "2.0" in problem["detail"]


async def test_auth_and_rights(server):
    """No or bad token → 401; read-only → 403; someone else as user → 403; malformed JSON → 400."""
    anon = server.http()
    assert_problem(await anon.post("/api/activity-stream", json=EXAMPLE, headers=V2), 401)
    bad = server.http("not-a-token")
    assert_problem(await bad.post("/api/activity-stream", json=EXAMPLE, headers=V2), 401)
    reader = server.http(server.token("user-1", {"entity:*": ["read"]}))
    assert_problem(await reader.post("/api/activity-stream", json=EXAMPLE, headers=V2), 403)
    mallory = server.http(server.token("mallory", RIGHTS))
    assert_problem(await mallory.post("/api/activity-stream", json=EXAMPLE, headers=V2), 403)
    r = await mallory.post("/api/activity-stream", content=b"{nope", headers={**V2, "Content-Type": "application/json"})
    assert_problem(r, 400)


async def test_put_replaces_with_optimistic_locking(server, jane):
    """PUT with the version read → 200 version+1; a stale version → 412 with the current one."""
    entry = await create(jane)
    url = f"/api/activity-stream/{entry['id']}"
    body = {**EXAMPLE, "comment": "Payment refunded", "emotion": "sad", "version": 1}
    r = await jane.put(url, json=body, headers=V2)
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["id"] == entry["id"] and updated["version"] == 2 and updated["comment"] == "Payment refunded"
    assert updated["createdDate"] == entry["createdDate"] and updated["lastUpdate"] >= entry["lastUpdate"]
    stale = assert_problem(await jane.put(url, json={**body, "comment": "lost"}, headers=V2), 412)
    assert stale["version"] == 2
    # a fetched entry can be sent back as is (server-owned fields ignored, id must match)
    again = await jane.put(url, json={**updated, "emotion": "happy"}, headers=V2)
    assert again.status_code == 200 and again.json()["version"] == 3 and again.json()["emotion"] == "happy"
    missing = assert_problem(await jane.put(url, json=EXAMPLE, headers=V2), 422)
    assert {e["loc"] for e in missing["errors"]} == {"version"}
    assert_problem(await jane.put(url, json={**body, "id": "other", "version": 3}, headers=V2), 422)
    assert_problem(await jane.put("/api/activity-stream/nope", json={**body, "version": 1}, headers=V2), 404)
    bob = server.http(server.token("bob", RIGHTS))
    assert_problem(await bob.put(url, json={**body, "user": None, "version": 3}, headers=V2), 403)
    native = (await jane.get(f"/v1/feeds/{FEED}/activities/{entry['id']}")).json()
    assert native["version"] == 3 and native["text"] == "Payment refunded" and native["emotion"] == "happy"


async def test_create_arrives_live_and_lists_oldest_first(server, jane):
    """A Wink write reaches a subscriber of entity:<id> live; the Wink list shows entries oldest first."""
    ws = await server.ws(server.token("watcher", RIGHTS))
    await subscribe(ws, FEED)
    first = await create(jane)
    event = await recv(ws)
    assert event["type"] == "activity" and event["feed"] == FEED and event["event"] == "created"
    assert event["activity"]["id"] == first["id"] and event["activity"]["text"] == EXAMPLE["comment"]
    second = await create(jane, {**EXAMPLE, "eventDate": "2026-01-15T10:00:00Z", "comment": "Checked in"})
    assert (await recv(ws))["activity"]["id"] == second["id"]
    await jane.put(f"/api/activity-stream/{second['id']}", json={**EXAMPLE, "version": 1}, headers=V2)
    assert (await recv(ws))["event"] == "updated"
    r = await jane.get(f"/api/activity-stream/{ENTITY}/list", headers=V2)
    assert r.status_code == 200
    assert [e["id"] for e in r.json()] == [first["id"], second["id"]]
    assert r.json()[0] == first
