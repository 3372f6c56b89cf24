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
}


async def test_getstream_paths_are_described_only_when_on(server_factory: Any) -> None:
    """With [getstream] on, every flat-feed route is described (summary, operationId, GetStream
    errors); without it, no /api/v1.0/ path is."""
    off = await server_factory()
    assert not [p for p in off.app.openapi.document()["paths"] if p.startswith("/api/v1.0/")]
    gs: RunningServer = await server_factory(getstream=GETSTREAM)
    doc = (await gs.http().get("/openapi.json")).json()
    described = {p: set(ops) for p, ops in doc["paths"].items() if p.startswith("/api/v1.0/")}
    assert described == PATHS
    for path in PATHS:
        for op in doc["paths"][path].values():
            assert op["summary"] and op["operationId"] and op["security"], path
            assert "GsError" in str(op["responses"]["404"]), path
    assert {"getstreamApiKey", "getstreamToken"} <= set(doc["components"]["securitySchemes"])


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
