"""ActivityEntry style (SPEC §8): POST /v1/activity-entries → 201 {"id"}, mapped onto our activity.

Field names follow emakin's ``$ActivityStream`` ActivityEntry (``@type``, ``actor``, ``attachments``,
``objectId``/``objectType``, ``publishedAt``, ``targets`` of ``@type`` Identity|Everyone|Members|Public).
"""

from __future__ import annotations

import pytest
from conftest import recv, subscribe

FEED = "case:case-42"
RIGHTS = {"case:*": ["read", "write", "member"]}
ENTRY = {
    "@type": "share",
    "actor": "user-1",
    "objectId": "case-42",
    "objectType": "case",
    "publishedAt": "2026-01-14T09:30:00+01:00",
    "attachments": [
        "report.pdf",
        {"@type": "file", "id": "scan-7.png"},
        {"@type": "link", "id": "https://example.com/policy"},
        {"@type": "video", "id": "vid-1"},
    ],
    "targets": [{"@type": "Identity", "targetId": "user-7", "notify": True}, {"@type": "Members"}],
}


@pytest.fixture
async def author(server):
    return server.http(server.token("user-1", RIGHTS, name="Ada"))


def assert_problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return r.json()


async def publish(http, body=None):
    r = await http.post("/v1/activity-entries", json=body or ENTRY)
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"id"}
    return r.json()["id"]


async def test_entry_maps_onto_one_activity(author):
    """Every ActivityEntry field lands in its native place; the answer is just {"id"}."""
    activity_id = await publish(author)
    r = await author.get(f"/v1/feeds/{FEED}/activities/{activity_id}")
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["verb"] == "share" and a["object"] == {"id": "case-42", "type": "case"}
    assert a["actor"] == {"id": "user-1", "name": "Ada"}
    assert a["time"] == "2026-01-14T08:30:00.000Z"
    assert a["attachments"] == [
        {"type": "file", "id": "report.pdf"},
        {"type": "file", "id": "scan-7.png"},
        {"type": "link", "url": "https://example.com/policy"},
        {"type": "video", "id": "vid-1"},
    ]
    assert a["audience"] == [{"type": "identity", "id": "user-7", "notify": True}, {"type": "members"}]


@pytest.mark.parametrize(
    ("targets", "audience"),
    [
        ([{"targetId": "user-7"}], [{"type": "identity", "id": "user-7"}]),  # @type defaults to Identity
        ([{"@type": "Everyone"}], [{"type": "everyone"}]),
        ([{"@type": "Public", "notify": False}], [{"type": "public"}]),
        (
            [{"@type": "Members"}, {"targetId": "u-2", "notify": True}],
            [{"type": "members"}, {"type": "identity", "id": "u-2", "notify": True}],
        ),
        ([], []),
    ],
)
async def test_targets_become_audience(author, targets, audience):
    """targets → audience entries, notify carried over (an empty list: only the author sees it)."""
    activity_id = await publish(author, {**ENTRY, "targets": targets})
    a = (await author.get(f"/v1/feeds/{FEED}/activities/{activity_id}")).json()
    assert a["audience"] == audience


async def test_defaults_identity_actor_and_custom_fields(author):
    """No actor → the caller; an Identity actor object; publishedAt defaults to now; other fields kept."""
    body = {k: v for k, v in ENTRY.items() if k not in ("actor", "publishedAt", "targets")}
    a = (await author.get(f"/v1/feeds/{FEED}/activities/{await publish(author, {**body, 'priority': 'high'})}")).json()
    assert a["actor"] == {"id": "user-1", "name": "Ada"} and a["priority"] == "high"
    assert a["audience"] == [{"type": "members"}] and a["time"] > "2026-01-15"
    identity = {"@type": "Identity", "id": "user-1", "name": "Ada L.", "avatar": "https://img/a.png"}
    b = (await author.get(f"/v1/feeds/{FEED}/activities/{await publish(author, {**ENTRY, 'actor': identity})}")).json()
    assert b["actor"] == {"id": "user-1", "name": "Ada L.", "avatar": "https://img/a.png"}


@pytest.mark.parametrize(
    ("change", "locs"),
    [
        ({"@type": None}, {"@type"}),
        ({"objectId": None}, {"objectId"}),
        ({"objectType": None}, {"objectType"}),
        ({"objectId": None, "objectType": None, "@type": None}, {"@type", "objectId", "objectType"}),
        ({"objectType": "has space"}, {"objectType"}),
        ({"publishedAt": "soon"}, {"publishedAt"}),
        ({"targets": [{"@type": "Group", "targetId": "g"}]}, {"targets.0.@type"}),
        ({"targets": [{"@type": "Identity"}]}, {"targets.0.targetId"}),
        ({"targets": [{"@type": "Everyone", "targetId": "x"}]}, {"targets.0.targetId"}),
        ({"targets": [{"targetId": "x", "notify": "yes"}]}, {"targets.0.notify"}),
        ({"targets": "everyone"}, {"targets"}),
        ({"attachments": [{"@type": "gif", "id": "x"}]}, {"attachments.1.@type", "attachments.0.@type"}),
        ({"attachments": [{"@type": "file"}]}, {"attachments.0"}),
        ({"actor": {"name": "no id"}}, {"actor.id"}),
        ({"score": 3}, {""}),
    ],
)
async def test_invalid_entries_are_422_in_activity_entry_names(author, change, locs):
    """Missing/bad fields → 422 problem whose error locations use ActivityEntry's names."""
    body = {k: v for k, v in {**ENTRY, **change}.items() if v is not None}
    problem = assert_problem(await author.post("/v1/activity-entries", json=body), 422)
    found = {e["loc"] for e in problem["errors"]}
    assert found & locs, problem


async def test_auth_and_rights(server, author):
    """No token → 401; read-only → 403; another actor without admin → 403; admins may name any actor."""
    assert_problem(await server.http().post("/v1/activity-entries", json=ENTRY), 401)
    reader = server.http(server.token("user-1", {"case:*": ["read"]}))
    assert_problem(await reader.post("/v1/activity-entries", json=ENTRY), 403)
    mallory = server.http(server.token("mallory", RIGHTS))
    assert_problem(await mallory.post("/v1/activity-entries", json=ENTRY), 403)
    admin = server.http(server.token("ops", {"case:*": ["admin"]}))
    activity_id = await publish(admin)
    a = (await admin.get(f"/v1/feeds/{FEED}/activities/{activity_id}")).json()
    assert a["actor"] == {"id": "user-1"}
    assert_problem(
        await author.post("/v1/activity-entries", content=b"[", headers={"Content-Type": "application/json"}), 400
    )


async def test_entry_arrives_live_and_only_for_its_targets(server, author):
    """A write reaches subscribers of <objectType>:<objectId> whom its targets admit; others never see it."""
    target = await server.ws(server.token("user-7", {"case:*": ["read"]}))
    outsider = await server.ws(server.token("user-8", {"case:*": ["read"]}))
    for ws in (target, outsider):
        await subscribe(ws, FEED)
    body = {**ENTRY, "targets": [{"@type": "Identity", "targetId": "user-7", "notify": True}]}
    activity_id = await publish(author, body)
    event = await recv(target)
    assert event["event"] == "created" and event["feed"] == FEED and event["activity"]["id"] == activity_id
    assert event["activity"]["audience"] == [{"type": "identity", "id": "user-7", "notify": True}]
    url = f"/v1/feeds/{FEED}/activities/{activity_id}"
    assert (await server.http(server.token("user-7", {"case:*": ["read"]})).get(url)).status_code == 200
    assert (await server.http(server.token("user-8", {"case:*": ["read"]})).get(url)).status_code == 404
    activity_id2 = await publish(author, {**ENTRY, "targets": [{"@type": "Everyone"}]})
    assert (await recv(outsider))["activity"]["id"] == activity_id2  # the first one never reached user-8


async def test_dialects_are_described_in_openapi(server):
    """Every dialect path appears in /openapi.json (rendered by /docs)."""
    paths = (await server.http().get("/openapi.json")).json()["paths"]
    for path in (
        "/api/activity-stream",
        "/api/activity-stream/{entry_id}",
        "/api/activity-stream/{entity}/list",
        "/v2/activities/add",
        "/v2/activities/get",
        "/v2/activities/update",
        "/v2/activities/delete",
        "/v1/activity-entries",
    ):
        assert path in paths, path
