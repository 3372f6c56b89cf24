"""Velt style (SPEC §8): /v2/activities/add|get|update|delete with Velt's bodies, answers and errors.

The request bodies are the examples of Velt's REST API reference ("Activity Logs",
docs.velt.dev/api-reference/rest-apis/v2/activities/*).
"""

from __future__ import annotations

import copy

import pytest
from conftest import nothing_more, recv, subscribe

from server.auth import hash_api_key

FEED = "org:org-123:doc:doc-456"
RIGHTS = {"org:org-123:*": ["read", "write", "member"]}
USER = {"userId": "user-1", "email": "user@example.com", "name": "User Name"}


def add_body(*activities, org="org-123", doc="doc-456"):
    return {"data": {"organizationId": org, "documentId": doc, "activities": list(activities)}}


# -- Velt's "Add Activity Logs" examples ------------------------------------------------------
ADD_SINGLE = add_body(
    {
        "featureType": "comment",
        "actionType": "comment.add",
        "actionUser": USER,
        "displayMessageTemplate": "{{user}} added a comment",
    }
)
ADD_CUSTOM_ID = add_body(
    {
        "id": "my-custom-activity-id",
        "featureType": "comment",
        "actionType": "comment.add",
        "actionUser": USER,
        "targetEntityId": "annotation-789",
        "displayMessageTemplate": "{{user}} added a comment",
    }
)
ADD_CUSTOM_FEATURE = add_body(
    {
        "featureType": "custom",
        "actionType": "statusChanged",
        "actionUser": USER,
        "targetEntityId": "entity-456",
        "displayMessageTemplate": "{{user}} changed the status",
    }
)
ADD_WITH_CHANGES = add_body(
    {
        "featureType": "comment",
        "actionType": "comment.update",
        "actionUser": USER,
        "targetEntityId": "annotation-789",
        "targetSubEntityId": "comment-001",
        "changes": {"commentText": {"from": "Original text", "to": "Updated text"}},
        "displayMessageTemplate": "{{user}} updated a comment",
        "displayMessageTemplateData": {"user": {"userId": "user-1", "name": "User Name"}},
    }
)
ADDED = {
    "result": {
        "status": "success",
        "message": "Activity(s) added successfully.",
        "data": {"success": True, "message": "Activity(s) added successfully."},
    }
}


@pytest.fixture
async def velt(server):
    """A Velt client: user-1's JWT in x-velt-auth-token (and an ignored x-velt-api-key)."""
    token = server.token("user-1", RIGHTS, name="User Name")
    return server.http(**{"x-velt-auth-token": token, "x-velt-api-key": "velt-key-ignored"})


@pytest.fixture
async def native(server):
    return server.http(server.token("user-1", RIGHTS))


async def call(http, op, body, status=200):
    r = await http.post(f"/v2/activities/{op}", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def velt_error(r, http_status, status="INVALID_ARGUMENT"):
    """Assert Velt's failure body exactly: {"error": {"message", "status"}} — not an RFC 9457 problem."""
    assert r.status_code == http_status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "status"}, body
    assert body["error"]["status"] == status and body["error"]["message"]
    return body["error"]["message"]


async def activities(native, feed=FEED):
    r = await native.get(f"/v1/feeds/{feed}/activities", params={"limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["results"]


async def test_add_examples_answer_velts_success_body(velt, native):
    """Each of Velt's add examples → 200 with Velt's success body, stored in org:<org>:doc:<doc>."""
    for body in (ADD_SINGLE, ADD_CUSTOM_ID, ADD_CUSTOM_FEATURE, ADD_WITH_CHANGES):
        assert await call(velt, "add", body) == ADDED
    stored = await activities(native)
    assert len(stored) == 4
    changed = next(a for a in stored if a["verb"] == "comment.update")
    assert changed["object"] == {"id": "doc-456", "type": "document"}
    assert changed["actor"] == {"id": "user-1", "email": "user@example.com", "name": "User Name"}
    assert changed["target"] == {"id": "annotation-789", "sub_id": "comment-001"}
    assert changed["changes"] == {"commentText": {"from": "Original text", "to": "Updated text"}}
    assert changed["template"] == "{{user}} updated a comment"
    assert changed["template_data"] == {"user": {"userId": "user-1", "name": "User Name"}}
    assert changed["feature_type"] == "comment" and changed["audience"] == [{"type": "members"}]
    custom = next(a for a in stored if a["verb"] == "statusChanged")
    assert custom["feature_type"] == "custom" and custom["target"] == {"id": "entity-456"}
    assert any(a["id"] == "my-custom-activity-id" for a in stored)


async def test_all_fields_round_trip_through_get(velt):
    """entityData, entityTargetData, actionIcon, isActivityResolverUsed come back from get as sent."""
    item = copy.deepcopy(ADD_WITH_CHANGES["data"]["activities"][0])
    item.update(
        id="act-full",
        entityData={"annotationId": "annotation-789", "status": "open"},
        entityTargetData={"commentId": "comment-001", "text": "Updated text"},
        actionIcon="https://example.com/icons/edit.svg",
        isActivityResolverUsed=True,
    )
    await call(velt, "add", add_body(item))
    got = await call(velt, "get", {"data": {"organizationId": "org-123", "documentId": "doc-456"}})
    [record] = got["result"]["data"]
    timestamp = record.pop("timestamp")
    assert isinstance(timestamp, int) and timestamp > 1_700_000_000_000
    assert record == {**item, "metadata": {"documentId": "doc-456", "organizationId": "org-123"}}


async def test_client_id_makes_add_idempotent(velt, native):
    """Adding the same id again overwrites that activity (one activity, version 2)."""
    await call(velt, "add", ADD_CUSTOM_ID)
    again = copy.deepcopy(ADD_CUSTOM_ID)
    again["data"]["activities"][0]["displayMessageTemplate"] = "{{user}} re-added a comment"
    await call(velt, "add", again)
    [only] = await activities(native)
    assert only["id"] == "my-custom-activity-id" and only["version"] == 2
    assert only["template"] == "{{user}} re-added a comment"


async def test_get_examples(velt):
    """Velt's get examples: by document, by featureTypes, by activityIds, by targetEntityId — Velt's records."""
    for body in (ADD_SINGLE, ADD_CUSTOM_ID, ADD_CUSTOM_FEATURE, ADD_WITH_CHANGES):
        await call(velt, "add", body)
    by_doc = await call(
        velt, "get", {"data": {"organizationId": "org-123", "documentId": "doc-456", "order": "desc", "pageSize": 50}}
    )
    assert by_doc["result"]["status"] == "success"
    assert by_doc["result"]["message"] == "Activity(s) retrieved successfully."
    assert len(by_doc["result"]["data"]) == 4 and "pageToken" not in by_doc["result"]
    stamps = [a["timestamp"] for a in by_doc["result"]["data"]]
    assert stamps == sorted(stamps, reverse=True)
    comments = await call(
        velt,
        "get",
        {
            "data": {
                "organizationId": "org-123",
                "documentId": "doc-456",
                "featureTypes": ["comment"],
                "order": "desc",
                "pageSize": 50,
            }
        },
    )
    assert {a["featureType"] for a in comments["result"]["data"]} == {"comment"}
    assert len(comments["result"]["data"]) == 3
    by_ids = await call(
        velt,
        "get",
        {
            "data": {
                "organizationId": "org-123",
                "documentId": "doc-456",
                "activityIds": ["my-custom-activity-id", "nope"],
            }
        },
    )
    [record] = by_ids["result"]["data"]
    assert record.pop("timestamp") > 0
    assert record == {  # the shape of Velt's documented response record
        "id": "my-custom-activity-id",
        "featureType": "comment",
        "actionType": "comment.add",
        "actionUser": USER,
        "targetEntityId": "annotation-789",
        "displayMessageTemplate": "{{user}} added a comment",
        "metadata": {"documentId": "doc-456", "organizationId": "org-123"},
    }
    by_target = await call(
        velt,
        "get",
        {
            "data": {
                "organizationId": "org-123",
                "documentId": "doc-456",
                "targetEntityId": "annotation-789",
                "pageSize": 20,
            }
        },
    )
    assert {a["actionType"] for a in by_target["result"]["data"]} == {"comment.add", "comment.update"}
    filtered = await call(
        velt,
        "get",
        {
            "data": {
                "organizationId": "org-123",
                "documentId": "doc-456",
                "actionTypes": ["statusChanged", "comment.update"],
                "userId": "user-1",
            }
        },
    )
    assert {a["actionType"] for a in filtered["result"]["data"]} == {"statusChanged", "comment.update"}


async def test_get_pages_with_page_token_in_both_orders(velt):
    """pageSize pages with an opaque pageToken until the end; asc is the reverse of desc."""
    items = [
        {"id": f"a{i}", "featureType": "reaction", "actionType": "reaction.add", "actionUser": USER} for i in range(5)
    ]
    for item in items:
        await call(velt, "add", add_body(item))
    for order in ("desc", "asc"):
        seen, token = [], None
        for _ in range(5):
            data = {"organizationId": "org-123", "documentId": "doc-456", "order": order, "pageSize": 2}
            if token:
                data["pageToken"] = token
            result = (await call(velt, "get", {"data": data}))["result"]
            seen += [a["id"] for a in result["data"]]
            token = result.get("pageToken")
            if token is None:
                break
        expected = [f"a{i}" for i in range(5)]
        assert seen == (expected[::-1] if order == "desc" else expected)
    bad = await velt.post(
        "/v2/activities/get",
        json={"data": {"organizationId": "org-123", "documentId": "doc-456", "pageToken": "encryptedPageToken"}},
    )
    assert "pageToken" in velt_error(bad, 400)


async def test_update_examples_report_each_activity(velt, native):
    """Velt's update examples: per-id outcomes, a missing id reported as a failure, fields changed."""
    for i in ("001", "002"):
        item = {**ADD_SINGLE["data"]["activities"][0], "id": f"activity-{i}"}
        await call(velt, "add", add_body(item))
    single = {
        "data": {
            "organizationId": "org-123",
            "documentId": "doc-456",
            "activities": [{"id": "activity-001", "displayMessageTemplate": "{{user}} updated the comment"}],
        }
    }
    assert await call(velt, "update", single) == {
        "result": {
            "status": "success",
            "message": "Activity(s) updated successfully.",
            "data": {"activity-001": {"success": True, "message": "Activity updated."}},
        }
    }
    multiple = {
        "data": {
            "organizationId": "org-123",
            "documentId": "doc-456",
            "activities": [
                {
                    "id": "activity-001",
                    "displayMessageTemplate": "{{user}} updated the comment",
                    "displayMessageTemplateData": {"user": {"userId": "user-1", "name": "User Name"}},
                },
                {"id": "activity-002", "actionIcon": "https://example.com/icons/edit.svg"},
                {"id": "activity-404", "actionIcon": "x"},
            ],
        }
    }
    result = (await call(velt, "update", multiple))["result"]
    assert result["status"] == "success"
    assert result["data"]["activity-001"] == {"success": True, "message": "Activity updated."}
    assert result["data"]["activity-002"] == {"success": True, "message": "Activity updated."}
    assert result["data"]["activity-404"]["success"] is False
    assert result["data"]["activity-404"]["message"].startswith("Failed to update activity.")
    stored = {a["id"]: a for a in await activities(native)}
    assert stored["activity-001"]["template_data"] == {"user": {"userId": "user-1", "name": "User Name"}}
    assert (
        stored["activity-001"]["version"] == 3
        and stored["activity-002"]["icon"] == "https://example.com/icons/edit.svg"
    )
    bad = await velt.post(
        "/v2/activities/update",
        json={
            "data": {
                "organizationId": "org-123",
                "documentId": "doc-456",
                "activities": [{"id": "x", "actionType": "y"}],
            }
        },
    )
    assert "actionType" in velt_error(bad, 400)


async def test_delete_examples(velt, native):
    """Velt's delete examples: by activityIds, by targetEntityId, by document and target, by document."""
    for body in (ADD_SINGLE, ADD_CUSTOM_ID, ADD_CUSTOM_FEATURE, ADD_WITH_CHANGES):
        await call(velt, "add", body)
    by_ids = await call(
        velt,
        "delete",
        {
            "data": {
                "organizationId": "org-123",
                "documentId": "doc-456",
                "activityIds": ["my-custom-activity-id", "nope"],
            }
        },
    )
    assert by_ids["result"]["message"] == "Activity(s) deleted successfully."
    assert by_ids["result"]["data"]["my-custom-activity-id"] == {"success": True, "message": "Activity deleted."}
    assert by_ids["result"]["data"]["nope"]["success"] is False
    by_target = await call(
        velt,
        "delete",
        {"data": {"organizationId": "org-123", "documentId": "doc-456", "targetEntityId": "annotation-789"}},
    )
    assert [v["success"] for v in by_target["result"]["data"].values()] == [True]
    assert {a["verb"] for a in await activities(native)} == {"comment.add", "statusChanged"}
    by_doc = await call(velt, "delete", {"data": {"organizationId": "org-123", "documentId": "doc-456"}})
    assert len(by_doc["result"]["data"]) == 2 and all(v["success"] for v in by_doc["result"]["data"].values())
    assert await activities(native) == []
    org_wide = await velt.post(
        "/v2/activities/delete", json={"data": {"organizationId": "org-123", "activityIds": ["a"]}}
    )
    assert "documentId" in velt_error(org_wide, 400)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "data"),
        ({"data": {"documentId": "doc-456", "activities": ADD_SINGLE["data"]["activities"]}}, "organizationId"),
        ({"data": {"organizationId": "org-123", "activities": ADD_SINGLE["data"]["activities"]}}, "documentId"),
        (add_body(), "activities"),
        (add_body({"actionType": "a", "actionUser": USER}), "featureType"),
        (add_body({"featureType": "video", "actionType": "a", "actionUser": USER}), "featureType"),
        (add_body({"featureType": "comment", "actionUser": USER}), "actionType"),
        (add_body({"featureType": "comment", "actionType": "a"}), "actionUser"),
        (add_body({"featureType": "comment", "actionType": "a", "actionUser": {"name": "x"}}), "actionUser.userId"),
        (add_body({"featureType": "custom", "actionType": "a", "actionUser": USER}), "targetEntityId"),
        (
            add_body({"featureType": "comment", "actionType": "a", "actionUser": USER, "targetSubEntityId": "c"}),
            "targetSubEntityId",
        ),
        (add_body({"featureType": "comment", "actionType": "a", "actionUser": USER, "colour": "red"}), "colour"),
        (add_body({"featureType": "comment", "actionType": "a", "actionUser": USER, "changes": {"f": 1}}), "changes"),
        (
            add_body(
                {"featureType": "comment", "actionType": "a", "actionUser": USER, "displayMessageTemplate": "{{x"}
            ),
            "displayMessageTemplate",
        ),
        (add_body({"featureType": "comment", "actionType": "a", "actionUser": USER}, doc="has space"), "documentId"),
    ],
)
async def test_invalid_requests_are_velt_errors(velt, body, needle):
    """Missing required fields and bad enums → 400 INVALID_ARGUMENT in Velt's error body, naming Velt's field."""
    message = velt_error(await velt.post("/v2/activities/add", json=body), 400)
    assert needle in message, message


async def test_get_validation(velt):
    """get: bad order, pageSize, featureTypes and a missing documentId are INVALID_ARGUMENT."""
    base = {"organizationId": "org-123", "documentId": "doc-456"}
    for data, needle in (
        ({**base, "order": "sideways"}, "order"),
        ({**base, "pageSize": 0}, "pageSize"),
        ({**base, "featureTypes": ["video"]}, "featureTypes"),
        ({"organizationId": "org-123"}, "documentId"),
    ):
        velt_error(await velt.post("/v2/activities/get", json={"data": data}), 400)
        assert needle in (await velt.post("/v2/activities/get", json={"data": data})).json()["error"]["message"]


async def test_auth_errors_are_velt_errors(server):
    """No token → 401 UNAUTHENTICATED, bad token → 401, read-only → 403 PERMISSION_DENIED, malformed JSON → 400."""
    anon = server.http(**{"x-velt-api-key": "k"})
    velt_error(await anon.post("/v2/activities/add", json=ADD_SINGLE), 401, "UNAUTHENTICATED")
    for bad in ("a.b.c", "unknown-api-key"):
        http = server.http(**{"x-velt-auth-token": bad})
        velt_error(await http.post("/v2/activities/add", json=ADD_SINGLE), 401, "UNAUTHENTICATED")
    reader = server.http(**{"x-velt-auth-token": server.token("user-1", {"org:*": ["read"]})})
    for op in ("add", "update", "delete"):
        body = (
            ADD_SINGLE
            if op != "update"
            else {"data": {**ADD_SINGLE["data"], "activities": [{"id": "a", "actionIcon": "i"}]}}
        )
        velt_error(await reader.post(f"/v2/activities/{op}", json=body), 403, "PERMISSION_DENIED")
    stranger = server.http(**{"x-velt-auth-token": server.token("user-1", {"org:other:*": ["read"]})})
    velt_error(
        await stranger.post("/v2/activities/get", json={"data": {"organizationId": "org-123", "documentId": "d"}}),
        403,
        "PERMISSION_DENIED",
    )
    other = server.http(**{"x-velt-auth-token": server.token("mallory", RIGHTS)})
    velt_error(await other.post("/v2/activities/add", json=ADD_SINGLE), 403, "PERMISSION_DENIED")
    writer = server.http(**{"x-velt-auth-token": server.token("user-1", RIGHTS)})
    r = await writer.post("/v2/activities/add", content=b"{not json", headers={"Content-Type": "application/json"})
    velt_error(r, 400)
    r = await writer.get("/v2/activities/add")
    assert r.status_code == 405 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_api_key_in_velt_auth_token_writes_as_any_user(server_factory):
    """x-velt-auth-token may carry one of our API keys (a global admin): any actionUser is allowed."""
    srv = await server_factory(auth={"api_keys": [hash_api_key("svc-velt")]})
    service = srv.http(**{"x-velt-auth-token": "svc-velt", "x-velt-api-key": "whatever"})
    body = copy.deepcopy(ADD_SINGLE)
    body["data"]["activities"][0]["actionUser"] = {"userId": "user-9", "name": "Nine"}
    assert await call(service, "add", body) == ADDED
    [record] = (await call(service, "get", {"data": {"organizationId": "org-123", "documentId": "doc-456"}}))["result"][
        "data"
    ]
    assert record["actionUser"] == {"userId": "user-9", "name": "Nine"}


async def test_writes_arrive_live_and_read_natively(server, velt, native):
    """add/update/delete through Velt reach a subscriber of org:<org>:doc:<doc> as created/updated/deleted."""
    ws = await server.ws(server.token("watcher", RIGHTS))
    await subscribe(ws, FEED)
    await call(velt, "add", ADD_CUSTOM_ID)
    created = await recv(ws)
    assert created["event"] == "created" and created["feed"] == FEED
    assert created["activity"]["id"] == "my-custom-activity-id" and created["activity"]["verb"] == "comment.add"
    await call(
        velt,
        "update",
        {
            "data": {
                "organizationId": "org-123",
                "documentId": "doc-456",
                "activities": [{"id": "my-custom-activity-id", "actionIcon": "https://example.com/i.svg"}],
            }
        },
    )
    updated = await recv(ws)
    assert updated["event"] == "updated" and updated["activity"]["icon"] == "https://example.com/i.svg"
    r = await native.get(f"/v1/feeds/{FEED}/activities/my-custom-activity-id")
    assert r.status_code == 200 and r.json()["icon"] == "https://example.com/i.svg"
    await call(
        velt,
        "delete",
        {"data": {"organizationId": "org-123", "documentId": "doc-456", "activityIds": ["my-custom-activity-id"]}},
    )
    deleted = await recv(ws)
    assert deleted["event"] == "deleted" and deleted["activity"]["id"] == "my-custom-activity-id"
    await nothing_more(ws)
