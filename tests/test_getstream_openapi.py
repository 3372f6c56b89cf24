"""The GetStream ``/api/v1.0/`` flat-feed routes in ``/openapi.json``: present when the dialect is
on, complete, and real answers (successes and GetStream errors) validate against them."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from conftest import RunningServer
from getstream_support import GETSTREAM, GS_KEY, GS_SECRET
from test_openapi import Recorder, mismatches

pytestmark = pytest.mark.timeout(60)

PATHS = {
    "/api/v1.0/feed/{slug}/{user_id}/": {"get", "post"},
    "/api/v1.0/feed/{slug}/{user_id}/{activity_id}/": {"delete"},
    "/api/v1.0/feed/add_to_many/": {"post"},
    "/api/v1.0/enrich/feed/{slug}/{user_id}/": {"get"},
    "/api/v1.0/activities/": {"get", "post"},
    "/api/v1.0/enrich/activities/": {"get"},
    "/api/v1.0/activity/": {"post"},
    "/api/v1.0/feed_targets/{slug}/{user_id}/activity_to_targets/": {"post"},
    # SPEC §12 (model.py)
    "/api/v1.0/feed/{slug}/{user_id}/follows/": {"get", "post"},
    "/api/v1.0/feed/{slug}/{user_id}/follows/{target}/": {"delete"},
    "/api/v1.0/feed/{slug}/{user_id}/following/": {"get", "post"},
    "/api/v1.0/feed/{slug}/{user_id}/following/{target}/": {"delete"},
    "/api/v1.0/feed/{slug}/{user_id}/followers/": {"get"},
    "/api/v1.0/follow_many/": {"post"},
    "/api/v1.0/unfollow_many/": {"post"},
    "/api/v1.0/stats/follow/": {"get"},
    "/api/v1.0/reaction/": {"post"},
    "/api/v1.0/reaction/{id}/": {"get", "put", "delete"},
    "/api/v1.0/reaction/{by}/{value}/": {"get"},
    "/api/v1.0/reaction/{by}/{value}/{kind}/": {"get"},
    "/api/v1.0/user/": {"post"},
    "/api/v1.0/user/{id}/": {"get", "put", "delete"},
    "/api/v1.0/collections/": {"get", "post", "delete"},
    "/api/v1.0/collections/{collection}/": {"post"},
    "/api/v1.0/collections/{collection}/{id}/": {"get", "put", "delete"},
}


async def test_getstream_paths_are_described_only_when_on(server_factory: Any) -> None:
    """With [getstream] on, every flat-feed route is described (summary, operationId, GetStream
    errors); without it, no /api/v1.0/ path is."""
    off = await server_factory()
    assert not [p for p in off.app.openapi.document()["paths"] if p.startswith(("/api/v1.0/", "/faye"))]
    gs: RunningServer = await server_factory(getstream=GETSTREAM)
    doc = (await gs.http().get("/openapi.json")).json()
    described = {p: set(ops) for p, ops in doc["paths"].items() if p.startswith("/api/v1.0/")}
    assert described == PATHS
    for path in PATHS:
        for op in doc["paths"][path].values():
            assert op["summary"] and op["operationId"] and op["security"], path
            assert "GsError" in str(op["responses"]["404"]), path
    assert {"getstreamApiKey", "getstreamToken"} <= set(doc["components"]["securitySchemes"])
    assert set(doc["paths"]["/faye"]) == {"get", "post"}
    faye = doc["paths"]["/faye"]["post"]["requestBody"]["content"]
    assert set(faye) == {"application/json", "application/x-www-form-urlencoded"}
    read = {p["name"] for p in doc["paths"]["/api/v1.0/feed/{slug}/{user_id}/"]["get"]["parameters"]}
    assert {"withOwnReactions", "reactionKindsFilter", "mark_seen", "discard_actors"} <= read


async def test_getstream_answers_match_the_description(server_factory: Any) -> None:
    """A tour of the flat-feed routes (writes, reads, updates, removes, errors) validates against
    /openapi.json."""
    gs: RunningServer = await server_factory(getstream=GETSTREAM)
    doc = (await gs.http().get("/openapi.json")).json()
    recorder = Recorder()
    token = jwt.encode({"resource": "*", "action": "*", "feed_id": "*"}, GS_SECRET, algorithm="HS256")
    client = gs.http(Authorization=token, **{"stream-auth-type": "jwt"})
    client.event_hooks = {"response": [recorder]}
    key = {"api_key": GS_KEY}
    act = {"actor": "eric", "verb": "tweet", "object": "o:1", "foreign_id": "f:1", "time": "2026-01-02T03:04:05.000000"}

    async def call(method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = await client.request(
            method, "/api/v1.0/" + path, params={**key, **kwargs.pop("params", {})}, **kwargs
        )
        assert response.status_code == status, response.text
        return response.json()

    added = await call("POST", "feed/user/oa/", 201, json=act)
    await call("POST", "feed/user/oa/", 201, json={"activities": [{"actor": "eric", "verb": "v", "object": "o:2"}]})
    await call(
        "POST",
        "feed/add_to_many/",
        201,
        json={"activity": {"actor": "a", "verb": "v", "object": "o"}, "feeds": ["user:ob"]},
    )
    await call("GET", "feed/user/oa/", 200, params={"limit": 1})
    await call("GET", "enrich/feed/user/oa/", 200)
    await call("GET", "activities/", 200, params={"ids": added["id"]})
    await call("GET", "enrich/activities/", 200, params={"foreign_ids": "f:1", "timestamps": act["time"]})
    await call("POST", "activities/", 201, json={"activities": [{**act, "extra": 1}]})
    await call("POST", "activity/", 201, json={"changes": [{"id": added["id"], "set": {"extra": 2}}]})
    await call(
        "POST",
        "feed_targets/user/oa/activity_to_targets/",
        201,
        json={"foreign_id": "f:1", "time": act["time"], "added_targets": ["user:oc"]},
    )
    await call("DELETE", f"feed/user/oa/{added['id']}/", 200)
    await call("GET", "activities/", 400)  # neither ids nor foreign_ids
    await call(
        "POST", "feed_targets/user/oa/activity_to_targets/", 404, json={"foreign_id": "nope", "time": act["time"]}
    )
    await call("POST", "activity/", 400, json={"changes": "x"})
    assert len(recorder.seen) == 14
    assert mismatches(doc, recorder.seen) == []


async def test_getstream_model_answers_match_the_description(server_factory: Any) -> None:
    """A tour of the SPEC §12 GetStream routes (follows, reactions, users, collections, grouped and
    enriched reads, errors) and of /faye (handshake, subscribe, connect, JSONP, malformed) validates
    against /openapi.json."""
    gs: RunningServer = await server_factory(getstream=GETSTREAM)
    doc = (await gs.http().get("/openapi.json")).json()
    recorder = Recorder()
    token = jwt.encode({"resource": "*", "action": "*", "feed_id": "*"}, GS_SECRET, algorithm="HS256")
    client = gs.http(Authorization=token, **{"stream-auth-type": "jwt"})
    client.event_hooks = {"response": [recorder]}
    key = {"api_key": GS_KEY}

    async def call(method: str, path: str, status: int, **kwargs: Any) -> Any:
        params = {**key, **kwargs.pop("params", {})}
        response = await client.request(method, "/api/v1.0/" + path, params=params, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        return response.json()

    act = await call("POST", "feed/user/eric/", 201, json={"actor": "eric", "verb": "like", "object": "o:1"})
    await call("POST", "feed/notification/eric/", 201, json={"actor": "bob", "verb": "like", "object": "o:1"})
    await call("POST", "feed/timeline/amy/follows/", 201, json={"target": "user:eric", "activity_copy_limit": 5})
    await call("POST", "feed/timeline/bob/following/", 201, json={"target": "user:eric"})
    await call("POST", "feed/timeline/amy/follows/", 400, json={})
    await call("GET", "feed/timeline/amy/follows/", 200, params={"limit": 5})
    await call("GET", "feed/timeline/bob/following/", 200)
    await call("GET", "feed/user/eric/followers/", 200)
    await call("GET", "stats/follow/", 200, params={"followers": "user:eric", "following": "timeline:amy"})
    await call("POST", "follow_many/", 201, json=[{"source": "timeline:cy", "target": "user:eric"}])
    await call("POST", "unfollow_many/", 201, json=[{"source": "timeline:cy", "target": "user:eric"}])
    await call("DELETE", "feed/timeline/bob/following/user:eric/", 200)
    await call("DELETE", "feed/timeline/amy/follows/user:eric/", 200, params={"keep_history": "true"})

    reaction = await call("POST", "reaction/", 201, json={"kind": "like", "activity_id": act["id"], "user_id": "amy"})
    await call("POST", "reaction/", 201, json={"kind": "reply", "parent": reaction["id"], "user_id": "amy"})
    await call("POST", "reaction/", 404, json={"kind": "like", "activity_id": "nope", "user_id": "amy"})
    await call("GET", f"reaction/{reaction['id']}/", 200)
    await call("PUT", f"reaction/{reaction['id']}/", 201, json={"data": {"n": 1}})
    await call("GET", f"reaction/activity_id/{act['id']}/", 200, params={"with_activity_data": "true"})
    await call("GET", f"reaction/activity_id/{act['id']}/like/", 200)
    await call("GET", "reaction/user_id/amy/", 200)
    read = {"withReactionCounts": "true", "withOwnReactions": "true", "withRecentReactions": "true"}
    await call("GET", "enrich/feed/user/eric/", 200, params=read)
    await call("GET", "feed/notification/eric/", 200, params={"mark_seen": "true"})
    await call("DELETE", f"reaction/{reaction['id']}/", 200)

    await call("POST", "user/", 201, json={"id": "amy", "data": {"name": "Amy"}})
    await call("POST", "user/", 409, json={"id": "amy", "data": {}})
    await call("POST", "user/", 200, params={"get_or_create": "true"}, json={"id": "amy", "data": {}})
    await call("GET", "user/amy/", 200)
    await call("PUT", "user/amy/", 201, json={"data": {"name": "Amy B."}})
    await call("GET", "user/nobody/", 404)
    await call("POST", "collections/food/", 201, json={"id": "pizza", "data": {"name": "Pizza"}})
    await call("POST", "collections/food/", 409, json={"id": "pizza", "data": {}})
    await call("GET", "collections/food/pizza/", 200)
    await call("PUT", "collections/food/pizza/", 201, json={"data": {"name": "Pizza!"}})
    await call("POST", "collections/", 201, json={"data": {"food": [{"id": "pasta", "name": "Pasta"}]}})
    await call("GET", "collections/", 200, params={"foreign_ids": "food:pizza,food:pasta"})
    await call("POST", "collections/", 400, json={"data": {"food": [None]}})  # was a 500
    await call("DELETE", "collections/", 200, params={"collection_name": "food", "ids": "pasta"})
    await call("DELETE", "collections/food/pizza/", 200)
    await call("DELETE", "user/amy/", 200)

    faye = gs.http()
    faye.event_hooks = {"response": [recorder]}
    hello = (await faye.post("/faye", json=[{"channel": "/meta/handshake", "version": "1.0", "id": "1"}])).json()
    client_id = hello[0]["clientId"]
    feed_token = jwt.encode({"resource": "*", "action": "*", "feed_id": "usereric"}, GS_SECRET, algorithm="HS256")
    subscribe = {
        "channel": "/meta/subscribe",
        "clientId": client_id,
        "subscription": f"/site-{GETSTREAM['app_id']}-feed-usereric",
        "ext": {"api_key": GS_KEY, "signature": feed_token},
    }
    assert (await faye.post("/faye", json=subscribe)).json()[0]["successful"] is True
    await faye.post("/faye", json={**subscribe, "ext": {}})  # refused: successful false, 403::Forbidden
    await call("POST", "feed/user/eric/", 201, json={"actor": "eric", "verb": "post", "object": "o:2"})
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    delivered = (await faye.post("/faye", json=connect)).json()
    assert any("data" in m for m in delivered), delivered
    await faye.post("/faye", data={"message": '{"channel": "/meta/connect", "clientId": "gone"}'})
    await faye.get("/faye", params={"message": '[{"channel": "/meta/disconnect", "clientId": "x"}]', "jsonp": "cb"})
    await faye.post("/faye", content=b"{nope", headers={"content-type": "application/json"})  # 400

    statuses = {(r.request.url.path.split("/")[1], r.status_code) for r in recorder.seen}
    assert ("faye", 400) in statuses and ("api", 409) in statuses and ("api", 404) in statuses
    assert mismatches(doc, recorder.seen) == []
