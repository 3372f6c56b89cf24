"""The generated OpenAPI description: it accepts what the server accepts, and real answers match it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from server.dialects import activity_entry, velt, wink
from server.dialects.schemas import ActivityEntryIn, VeltActivityChange, VeltActivityIn, WinkEntryIn
from server.openapi import OpenApi

FEED = "booking:f4d1"


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema`` whose ``#/components/...`` references resolve in ``doc``."""
    return Draft202012Validator(
        {**schema, "components": doc["components"]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def body_schema(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def errors_of(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    return [e.message for e in validator(doc, schema).iter_errors(value)]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    """The description of a server with the default limits (its routes' dialects included)."""
    from server.app import create_app
    from server.config import load_settings

    app = create_app(load_settings(None, auth={"jwt_secret": "x" * 32}, redis={"url": "redis://127.0.0.1:1/0"}))
    return app.openapi.document()


@pytest.mark.parametrize(
    "body",
    [
        {"verb": "x", "object": "y"},
        {"verb": "x", "object": "y", "audience": ["public", "members", "identity:u-7", "role:accounting"]},
        {"verb": "x", "object": {"id": "f4d1", "type": "booking"}, "audience": [{"type": "identity", "id": "u-7"}]},
        {"verb": "x", "object": "y", "custom": {"any": ["json"]}},
        {"activities": [{"verb": "x", "object": "y"}, {"verb": "z", "object": "w"}]},
    ],
)
def test_bodies_the_server_accepts_validate(doc, body):
    """The minimal body, audience shorthands, custom fields and a batch validate against the POST schema."""
    assert errors_of(doc, body_schema(doc, "/v1/feeds/{feed}/activities", "post"), body) == []


@pytest.mark.parametrize(
    "body",
    [
        {"verb": "x"},
        {"object": "y"},
        {"verb": "x", "object": "y", "audience": ["nobody"]},
        {"verb": "x", "object": "y", "audience": [{"type": "identity"}]},
        {"verb": "x", "object": "y", "audience": [{"type": "public", "id": "x"}]},
        {"verb": "x", "object": "y", "a.b": 1},
        {"verb": "x", "object": "y", "score": 1},
        {"activities": []},
        {"activities": [{"verb": "x", "object": "y"}] * 101},
    ],
)
def test_bodies_the_server_refuses_do_not_validate(doc, body):
    """What the server answers 422 (or 413) for breaks the schema too."""
    assert errors_of(doc, body_schema(doc, "/v1/feeds/{feed}/activities", "post"), body) != []


def test_every_operation_is_complete(doc):
    """Bodies are required, every operation has typed responses and problems, and no dangling citations."""
    assert doc["openapi"] == "3.1.0"
    assert set(doc["components"]["securitySchemes"]) >= {"bearer", "apiKey"}
    assert doc["components"]["securitySchemes"]["bearer"]["bearerFormat"] == "JWT"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op["summary"] and op["operationId"], where
            if "requestBody" in op:
                assert op["requestBody"]["required"] is True, where
            for status, response in op["responses"].items():
                for media, content in response.get("content", {}).items():
                    assert content["schema"], (where, status, media)
                if status.startswith(("4", "5")) and not path.startswith(("/v2/", "/readyz")):
                    assert "application/problem+json" in response["content"], (where, status)
    assert "SPEC" not in str(doc)
    assert "examples" in doc["components"]["schemas"]["ActivityIn"]
    Draft202012Validator.check_schema({"$defs": doc["components"]["schemas"]})


async def test_limits_follow_the_settings(server_factory):
    """max_batch, max_page and max_activity_bytes of the running server are in its description."""
    srv = await server_factory(feeds={"max_batch": 7, "max_page": 9, "max_activity_bytes": 4000})
    doc = (await srv.http().get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert schemas["ActivityBatch"]["properties"]["activities"]["maxItems"] == 7
    assert schemas["BatchUpdate"]["properties"]["activities"]["maxItems"] == 7
    assert schemas["VeltAddData"]["properties"]["activities"]["maxItems"] == 7
    limit = next(p for p in doc["paths"]["/v1/feeds/{feed}/activities"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 9 and limit["schema"]["minimum"] == 1
    post = doc["paths"]["/v1/feeds/{feed}/activities"]["post"]
    assert "4000 bytes" in post["description"] and "413" in post["responses"]
    assert any(
        p["name"] == "If-Match" for p in doc["paths"]["/v1/feeds/{feed}/activities/{activity_id}"]["put"]["parameters"]
    )
    notification_params = {p["name"] for p in doc["paths"]["/v1/notifications"]["get"]["parameters"]}
    assert notification_params == {"limit", "id_lt", "id_lte", "id_gt", "id_gte", "offset", "verb", "actor"}


def test_dialect_models_name_the_fields_their_tables_map():
    """Each dialect's request model has exactly the fields its FieldTable maps (and ignores)."""

    def names(model: Any) -> set[str]:
        return {f.alias or n for n, f in model.model_fields.items()}

    assert names(WinkEntryIn) == {f.theirs for f in wink.FIELDS.fields} | wink.FIELDS.ignore
    assert names(VeltActivityIn) == {f.theirs for f in velt.ACTIVITY.fields}
    assert names(VeltActivityChange) == {f.theirs for f in velt.UPDATABLE.fields} | {"id"}
    assert names(ActivityEntryIn) == {f.theirs for f in activity_entry.FIELDS.fields}


def test_dialects_contribute_operations_with_models():
    """A dialect adds its paths through OpenApi.operation; a clashing model name is refused."""
    from pydantic import BaseModel

    openapi = OpenApi()

    class Problem(BaseModel):  # same name as the native Problem, another schema
        code: int

    with pytest.raises(ValueError, match="Problem"):
        openapi.operation("/x", "post", summary="x", body=Problem, responses={200: None})


# -- real answers against the description -------------------------------------------------------


class Recorder:
    """Keeps every (method, path, response) an httpx client saw."""

    def __init__(self) -> None:
        self.seen: list[httpx.Response] = []

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        self.seen.append(response)


def template_of(doc: dict[str, Any], path: str, method: str = "") -> str:
    """The description's path template matching a concrete path (and method): the most specific
    one, as a router tries literal segments before parameters."""
    found = [
        template
        for template, ops in doc["paths"].items()
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) and (not method or method.lower() in ops)
    ]
    if not found:
        raise AssertionError(f"{method} {path} is not described")
    return min(found, key=lambda t: t.count("{"))


def mismatches(doc: dict[str, Any], responses: list[httpx.Response]) -> list[str]:
    """Each response whose status is undocumented or whose body breaks its documented schema."""
    out = []
    for r in responses:
        template = template_of(doc, r.request.url.path, r.request.method)
        where = f"{r.request.method} {r.request.url.path} → {r.status_code}"
        described = doc["paths"][template][r.request.method.lower()]["responses"].get(str(r.status_code))
        if described is None:
            out.append(f"{where}: status not described")
            continue
        if "content" not in described:
            if r.content:
                out.append(f"{where}: a body where none is described")
            continue
        media = r.headers.get("content-type", "").split(";")[0]
        if media not in described["content"]:
            out.append(f"{where}: content type {media} not described")
            continue
        value: Any = r.text if media.startswith("text/") else r.json()
        for error in validator(doc, described["content"][media]["schema"]).iter_errors(value):
            out.append(f"{where}: {error.message} at {list(error.absolute_path)}")
    return out


async def test_real_responses_match_the_description(server):
    """Answers of a real server to a tour of every route (successes and failures) validate against /openapi.json."""
    recorder = Recorder()
    hooks = {"response": [recorder]}
    rights = {"booking:*": ["read", "write", "member"], "entity:*": ["read", "write"], "case:*": ["read", "write"]}
    rights["org:o1:*"] = ["read", "write", "member"]
    alice = server.http(server.token("alice", rights, name="Alice"))
    bob = server.http(server.token("bob", {"booking:*": ["read"]}))
    anon = server.http()
    for client in (alice, bob, anon):
        client.event_hooks = hooks
    base = f"/v1/feeds/{FEED}/activities"

    created = (await alice.post(base, json={"verb": "x", "object": "y"})).json()["activities"][0]
    batch = {"activities": [{"verb": "a", "object": "o", "foreign_id": "f1", "time": "2026-01-14T09:30:00Z"}] * 1}
    batch["activities"].append({"verb": "b", "object": {"id": "f4d1", "type": "booking"}, "audience": ["identity:bob"]})
    await alice.post(base, json=batch)
    await alice.post(
        base, json={"verb": "n", "object": "y", "audience": [{"type": "identity", "id": "bob", "notify": True}]}
    )
    await alice.post(base, json={"verb": "x"})  # 422
    await alice.post(base, content=b"{nope")  # 400
    await alice.post(base, json={"verb": "x", "object": "y", "text": "z" * 20000})  # 413
    await bob.post(base, json={"verb": "x", "object": "y"})  # 403
    await anon.post(base, json={"verb": "x", "object": "y"})  # 401
    await alice.get(base, params={"limit": 1})
    await bob.get(base)
    await alice.get(base, params={"limit": 0})  # 422
    url = f"{base}/{created['id']}"
    await alice.get(url)
    await alice.get(f"{base}/01AAAAAAAAAAAAAAAAAAAAAAAA")  # 404
    await alice.put(url, json={"verb": "x2", "object": "y"}, headers={"If-Match": '"1"'})
    await alice.put(url, json={"verb": "x3", "object": "y"}, headers={"If-Match": '"1"'})  # 412
    await alice.patch(url, json={"set": {"text": "t"}})
    await alice.patch(url, json={"set": {}})  # 422
    await alice.request("DELETE", base, params={"foreign_id": "f1"})
    await alice.request("DELETE", base)  # 422
    await alice.post(
        "/v1/activities/update",
        json={
            "activities": [
                {"feed": FEED, "foreign_id": "nope", "time": "2026-01-14T09:30:00Z", "verb": "v", "object": "o"}
            ]
        },
    )
    await alice.post(
        "/v1/activities/partial-update", json={"changes": [{"feed": FEED, "id": created["id"], "set": {"k": 1}}]}
    )
    await alice.delete(url)
    await alice.delete(url)  # 404
    await bob.get("/v1/notifications")
    await bob.post("/v1/notifications/seen", json={"all": True})
    await bob.post("/v1/notifications/read", json={"ids": ["01AAAAAAAAAAAAAAAAAAAAAAAA"]})
    await anon.get("/v1/notifications")  # 401
    for path in ("/healthz", "/readyz", "/metrics"):
        await anon.get(path)

    entry = {"acl": "MEMBERS", "entityIdentifier": "b1", "comment": "hello", "user": {"userIdentifier": "alice"}}
    stored = (await alice.post("/api/activity-stream", json=entry)).json()
    await alice.put(f"/api/activity-stream/{stored['id']}", json={**entry, "comment": "edited", "version": 1})
    await alice.get("/api/activity-stream/b1/list")
    await alice.post("/api/activity-stream", json={"acl": "NOPE"})  # 422
    velt_user = {"userId": "alice", "name": "Alice"}
    doc_ids = {"organizationId": "o1", "documentId": "d1"}
    add = {
        "data": {**doc_ids, "activities": [{"featureType": "comment", "actionType": "add", "actionUser": velt_user}]}
    }
    await alice.post("/v2/activities/add", json=add)
    listed = (await alice.post("/v2/activities/get", json={"data": doc_ids})).json()
    velt_id = listed["result"]["data"][0]["id"]
    await alice.post(
        "/v2/activities/update", json={"data": {**doc_ids, "activities": [{"id": velt_id, "actionIcon": "i"}]}}
    )
    await alice.post("/v2/activities/delete", json={"data": {**doc_ids, "activityIds": [velt_id, "missing"]}})
    await alice.post("/v2/activities/get", json={"data": {"organizationId": "o1"}})  # 400, Velt's shape
    await anon.post("/v2/activities/get", json={"data": doc_ids})  # 401, Velt's shape
    await alice.post("/v1/activity-entries", json={"@type": "commented", "objectId": "c1", "objectType": "case"})
    await alice.post("/v1/activity-entries", json={"@type": "commented"})  # 422

    statuses = {r.status_code for r in recorder.seen}
    assert statuses >= {200, 201, 204, 400, 401, 403, 404, 412, 413, 422}, statuses
    doc = (await server.http().get("/openapi.json")).json()
    assert mismatches(doc, recorder.seen) == []


async def test_model_route_answers_match_the_description(server):
    """Follows, reactions, users, collections, groups and enriched reads (successes and failures) of
    a real server validate against /openapi.json, whose entries for them come from models."""
    recorder = Recorder()
    everything = {"*": ["read", "write", "member", "admin"]}
    alice = server.http(server.token("alice", everything, name="Alice"))
    bob = server.http(server.token("bob", {"user:bob": ["read"]}))
    anon = server.http()
    for client in (alice, bob, anon):
        client.event_hooks = {"response": [recorder]}

    async def call(client: httpx.AsyncClient, method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = await client.request(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        return response.json() if response.content else None

    post = (await call(alice, "POST", "/v1/feeds/user:bob/activities", 201, json={"verb": "like", "object": "o"}))[
        "activities"
    ][0]
    await call(alice, "POST", "/v1/feeds/notification:carol/activities", 201, json={"verb": "like", "object": "o"})
    await call(alice, "POST", "/v1/feeds/timeline:alice/follows", 201, json={"target": "user:bob"})
    await call(alice, "POST", "/v1/feeds/timeline:alice/follows", 422, json={"target": "timeline:alice"})
    await call(alice, "POST", "/v1/feeds/timeline:alice/follows", 400, content=b"")
    await call(bob, "POST", "/v1/feeds/timeline:alice/follows", 403, json={"target": "user:bob"})
    await call(alice, "GET", "/v1/feeds/user:bob/followers", 200, params={"limit": 5})
    await call(alice, "GET", "/v1/feeds/timeline:alice/following", 200, params={"filter": "user:bob"})
    await call(alice, "GET", "/v1/feeds/timeline:alice/following", 422, params={"limit": 0})
    await call(alice, "GET", "/v1/feeds/timeline:alice/following", 422, params={"filter": "bad name"})
    await call(alice, "GET", "/v1/feeds/user:bob/follow_stats", 200, params={"followers_slugs": "timeline"})
    await call(alice, "POST", "/v1/follows", 201, json={"follows": [{"source": "timeline:x", "target": "user:bob"}]})
    await call(alice, "POST", "/v1/follows", 201, json=[{"source": "timeline:y", "target": "user:bob"}])
    await call(alice, "POST", "/v1/unfollows", 200, json={"follows": [{"source": "timeline:x", "target": "user:bob"}]})
    await call(alice, "POST", "/v1/unfollows", 422, json={"follows": []})
    await call(alice, "DELETE", "/v1/feeds/timeline:alice/follows/user:bob", 204, params={"keep_history": "true"})
    await call(anon, "DELETE", "/v1/feeds/timeline:alice/follows/user:bob", 401)

    like = {"kind": "like", "activity_id": post["id"], "feed": "user:bob", "data": {"n": 1}}
    reaction = await call(alice, "POST", "/v1/reactions", 201, json=like)
    await call(alice, "POST", "/v1/reactions", 201, json={"kind": "reply", "parent": reaction["id"]})
    await call(alice, "POST", "/v1/reactions", 409, json={**like, "id": reaction["id"]})
    await call(alice, "POST", "/v1/reactions", 404, json={**like, "activity_id": "01AAAAAAAAAAAAAAAAAAAAAAAA"})
    await call(alice, "GET", f"/v1/reactions/{reaction['id']}", 200)
    await call(alice, "PUT", f"/v1/reactions/{reaction['id']}", 200, json={"data": {"n": 2}})
    await call(alice, "PATCH", f"/v1/reactions/{reaction['id']}", 200, json={"data": {"n": 3}})
    await call(alice, "GET", "/v1/reactions", 200, params={"activity_id": post["id"], "feed": "user:bob"})
    await call(alice, "GET", "/v1/reactions", 200, params={"reaction_id": reaction["id"]})
    await call(alice, "GET", "/v1/reactions", 200, params={"user_id": "alice", "kind": "like"})
    await call(alice, "GET", "/v1/reactions", 422)
    enriched = {"with_reaction_counts": "true", "with_own_reactions": "true", "with_recent_reactions": "true"}
    page = await call(alice, "GET", "/v1/feeds/user:bob/activities", 200, params=enriched)
    assert page["results"][0]["reaction_counts"] == {"like": 1}
    await call(alice, "GET", "/v1/feeds/user:bob/activities", 200, params={"discard_actors": "alice"})

    await call(alice, "POST", "/v1/users", 201, json={"id": "alice", "data": {"name": "Alice"}})
    await call(alice, "POST", "/v1/users", 409, json={"id": "alice", "data": {}})
    await call(alice, "POST", "/v1/users", 200, params={"get_or_create": "true"}, json={"id": "alice"})
    await call(alice, "GET", "/v1/users/alice", 200)
    await call(alice, "PUT", "/v1/users/alice", 200, json={"data": {"name": "Alice B."}})
    await call(alice, "PUT", "/v1/users/alice", 422, json=[None])  # was taken as no data
    await call(alice, "GET", "/v1/users/nobody", 404)
    await call(alice, "POST", "/v1/collections/food", 201, json={"id": "pizza", "data": {"name": "Pizza"}})
    await call(alice, "POST", "/v1/collections/food", 409, json={"id": "pizza", "data": {}})
    await call(alice, "GET", "/v1/collections/food/pizza", 200)
    await call(alice, "PUT", "/v1/collections/food/pizza", 200, json={"data": {"name": "Pizza!"}})
    await call(alice, "PUT", "/v1/collections/food/pizza", 422, json="x")
    await call(alice, "POST", "/v1/collections", 201, json={"data": {"food": [{"id": "pasta", "name": "Pasta"}]}})
    await call(alice, "GET", "/v1/collections", 200, params={"foreign_ids": "food:pizza,food:pasta,food:none"})
    await call(alice, "POST", "/v1/collections", 422, json={"data": []})
    await call(alice, "POST", "/v1/collections", 422, json={"data": {"food": [None, 1]}})  # was a 500
    await call(alice, "POST", "/v1/feeds/user:bob/activities", 201, json={"verb": "eat", "object": "SO:food:pizza"})
    await call(alice, "GET", "/v1/feeds/user:bob/activities", 200)

    groups = await call(alice, "GET", "/v1/feeds/notification:carol/groups", 200, params={"mark_seen": "true"})
    assert groups["results"] and "unseen" in groups
    await call(alice, "GET", "/v1/feeds/user:bob/groups", 200)
    await call(alice, "POST", "/v1/feeds/notification:carol/groups/read", 200, json={"all": True})
    await call(
        alice, "POST", "/v1/feeds/notification:carol/groups/seen", 200, json={"ids": [groups["results"][0]["id"]]}
    )
    await call(alice, "POST", "/v1/feeds/notification:carol/groups/seen", 422, json={"nope": 1})

    await call(alice, "DELETE", f"/v1/reactions/{reaction['id']}", 204)
    await call(alice, "DELETE", f"/v1/reactions/{reaction['id']}", 404)
    await call(alice, "DELETE", "/v1/collections/food/pizza", 204)
    await call(alice, "DELETE", "/v1/users/alice", 204)

    doc = (await server.http().get("/openapi.json")).json()
    assert mismatches(doc, recorder.seen) == []
    described = {(template_of(doc, r.request.url.path, r.request.method), r.request.method) for r in recorder.seen}
    assert len(described) >= 27, described


async def test_405_names_every_method_of_the_path(server):
    """A path whose methods span several routes answers 405 with all of them in Allow, as the
    description lists them (Starlette alone names the first route's only)."""
    http = server.http(server.token("alice", {"*": ["read"]}))
    doc = (await http.get("/openapi.json")).json()
    for path, concrete in (
        ("/v1/feeds/{feed}/activities/{activity_id}", "/v1/feeds/a/activities/01AAAAAAAAAAAAAAAAAAAAAAAA"),
        ("/v1/reactions/{id}", "/v1/reactions/r1"),
        ("/v1/collections", "/v1/collections"),
    ):
        response = await http.request("OPTIONS", concrete)
        assert response.status_code == 405
        allowed = set(response.headers["allow"].split(", ")) - {"HEAD"}
        assert allowed == {m.upper() for m in doc["paths"][path]}, (path, allowed)


def test_model_routes_are_described_by_models(doc):
    """The follow/reaction/user/collection/group routes have typed bodies, parameters and answers
    (no bare ``{"type": "object"}``), and path parameters carry the server's own rules."""
    routes = [p for p in doc["paths"] if p.startswith(("/v1/reactions", "/v1/users", "/v1/collections", "/v1/follow"))]
    routes += [p for p in doc["paths"] if p.endswith(("/follows", "/followers", "/following", "/follow_stats"))]
    routes += [p for p in doc["paths"] if "/groups" in p or "/follows/" in p]
    assert len(set(routes)) == 16, routes
    for path in set(routes):
        for method, op in doc["paths"][path].items():
            where = f"{method} {path}"
            for status, response in op["responses"].items():
                for content in response.get("content", {}).values():
                    assert content["schema"] != {"type": "object"}, (where, status)
            if "requestBody" in op:
                assert "$ref" in str(op["requestBody"]["content"]["application/json"]["schema"]), where
            for param in op.get("parameters", ()):
                if param["in"] == "path":
                    assert "pattern" in param["schema"], (where, param)
    read = {p["name"] for p in doc["paths"]["/v1/feeds/{feed}/activities"]["get"]["parameters"]}
    assert {"with_own_reactions", "reaction_kinds", "discard_actors", "enrich"} <= read
    assert "default" not in str([op["responses"] for ops in doc["paths"].values() for op in ops.values()])


def test_mismatches_catches_a_wrong_answer(doc):
    """The checker used above reports an undocumented status and a body that breaks its schema."""
    request = httpx.Request("POST", f"http://x/v1/feeds/{FEED}/activities")
    wrong_body = httpx.Response(201, json={"activities": [{"id": 1}]}, request=request)
    undocumented = httpx.Response(418, json={}, request=request)
    found = mismatches(doc, [wrong_body, undocumented])
    assert len(found) >= 2 and any("418" in m for m in found)


async def test_docs_are_served_offline_from_the_package(server):
    """/docs (Swagger UI) and the AsyncAPI page load only assets the server itself serves."""
    http = server.http()
    for page in ("/docs", "/docs/static/asyncapi.html"):
        response = await http.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert assets and all(a.startswith(("/", "data:")) for a in assets), assets  # nothing from a CDN
        for asset in assets:
            if asset.startswith("/docs/static/"):
                fetched = await http.get(asset)
                assert fetched.status_code == 200 and len(fetched.content) > 100, asset
    bundle = (await http.get("/docs/static/vendor/swagger-ui-bundle.js")).text
    assert "SwaggerUIBundle" in bundle and "sourceMappingURL" not in bundle


async def test_root_points_to_the_docs_and_the_dashboard(server):
    """GET / answers JSON links (an HTML page to browsers) to /docs, the descriptions and /demo/."""
    http = server.http()
    links = (await http.get("/")).json()
    assert links["docs"] == "/docs" and links["demo"] == "/demo/" and links["asyncapi"] == "/asyncapi.json"
    page = await http.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html") and 'href="/demo/"' in page.text
