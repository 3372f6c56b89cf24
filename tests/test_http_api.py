"""The native HTTP API (SPEC §4): writes, reads, pagination, uniqueness, limits and errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

FEED = "booking:f4d1c8e5"
RIGHTS = {"booking:*": ["read", "write", "member"]}


@pytest.fixture
async def api(server):
    """An httpx client of a writer/reader on booking:*."""
    return server.http(server.token("alice", RIGHTS, name="Alice"))


async def post(api, body, feed=FEED):
    return await api.post(f"/v1/feeds/{feed}/activities", json=body)


def assert_problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"]
    return body


async def test_single_write_returns_the_stored_activity(api):
    """POST one activity → 201 with server-owned fields set."""
    r = await post(
        api,
        {
            "verb": "booking.confirm",
            "object": {"id": "f4d1c8e5", "type": "booking"},
            "text": "Booking confirmed",
            "course": "custom",
            "time": "2026-01-14T09:30:00Z",
        },
    )
    assert r.status_code == 201
    a = r.json()["activities"][0]
    assert a["feed"] == FEED and a["seq"] == 1 and a["version"] == 1
    assert a["time"] == "2026-01-14T09:30:00.000Z" and a["id"].startswith("01KEXX")
    assert a["created_at"] == a["updated_at"] and a["course"] == "custom"
    assert a["object"] == {"id": "f4d1c8e5", "type": "booking"}


async def test_batch_write_and_its_limits(server, api):
    """A batch of up to max_batch is stored in order; more is 413; empty is 422."""
    r = await post(api, {"activities": [{"verb": "v", "object": f"o:{i}"} for i in range(100)]})
    assert r.status_code == 201
    seqs = [a["seq"] for a in r.json()["activities"]]
    assert seqs == list(range(1, 101))
    assert_problem(await post(api, {"activities": [{"verb": "v", "object": "o"}] * 101}), 413)
    assert_problem(await post(api, {"activities": []}), 422)
    assert_problem(await post(api, {"activities": {"verb": "v"}}), 422)


async def test_batch_with_one_bad_item_writes_nothing(api):
    """Validation covers the whole batch: one bad item → 422 naming it, nothing stored."""
    r = await post(api, {"activities": [{"verb": "v", "object": "o"}, {"verb": "v"}, {"object": "x"}]})
    body = assert_problem(r, 422)
    locs = {e["loc"] for e in body["errors"]}
    assert {"activities.1.object", "activities.2.verb"} <= locs
    assert (await api.get(f"/v1/feeds/{FEED}/activities")).json()["results"] == []


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (b"", 400),
        (b"[1, 2]", 422),
        (b'"text"', 422),
        (b"null", 422),
        (b"42", 422),
        (b'{"verb": "v"}', 422),
        (b'{"verb": 5, "object": "o"}', 422),
        (b'{"verb": "v", "object": "o", "score": 1}', 422),
        (b'{"verb": "v", "object": "o", "audience": ["identity"]}', 422),
        (b'{"verb": "v", "object": "o", "time": "not a time"}', 422),
        (b'{"verb": "v", "object": "o", "a.b": 1}', 422),
    ],
)
async def test_bad_bodies_are_4xx_problems(api, content, status):
    """Malformed JSON is 400, invalid activities 422 — never a 500."""
    r = await api.post(f"/v1/feeds/{FEED}/activities", content=content, headers={"content-type": "application/json"})
    body = assert_problem(r, status)
    if status == 422:
        assert body["errors"] and all("loc" in e and "msg" in e for e in body["errors"])


async def test_oversize_activity_and_body(api):
    """An activity over max_activity_bytes is 413, as is a body over the request limit."""
    assert_problem(await post(api, {"verb": "v", "object": "o", "text": "x" * 10_300}), 413)
    assert (await post(api, {"verb": "v", "object": "o", "text": "x" * 9_000})).status_code == 201
    huge = b'{"activities": [' + b",".join([b'{"verb":"v","object":"o","text":"' + b"x" * 10_000 + b'"}'] * 120) + b"]}"
    r = await api.post(f"/v1/feeds/{FEED}/activities", content=huge, headers={"content-type": "application/json"})
    assert_problem(r, 413)


@pytest.mark.parametrize("feed", ["bad%20feed", "a%7Bb%7D", "x" * 129, "%C3%A9t%C3%A9"])
async def test_bad_feed_names_are_422(api, feed):
    """Feed names outside the allowed characters or length are 422."""
    assert_problem(await post(api, {"verb": "v", "object": "o"}, feed=feed), 422)
    assert_problem(await api.get(f"/v1/feeds/{feed}/activities"), 422)


async def test_unknown_routes_and_methods_are_problems(api):
    """Starlette's own 404/405 use the problem format too."""
    assert_problem(await api.get("/v1/nothing"), 404)
    assert_problem(await api.delete("/healthz"), 405)


async def test_upsert_by_foreign_id_and_time(server, api):
    """Writing an existing (foreign_id, time) updates it in place: same id, version + 1."""
    body = {
        "verb": "comment.add",
        "object": "c:1",
        "foreign_id": "comment:001",
        "time": "2026-01-14T09:30:00Z",
    }
    first = (await post(api, {**body, "text": "one"})).json()["activities"][0]
    second = (await post(api, {**body, "text": "two"})).json()["activities"][0]
    assert second["id"] == first["id"] and second["version"] == 2 and second["text"] == "two"
    assert second["created_at"] == first["created_at"] and second["seq"] == first["seq"] + 1
    other_time = (await post(api, {**body, "time": "2026-01-14T09:31:00Z"})).json()["activities"][0]
    assert other_time["id"] != first["id"]
    listed = (await api.get(f"/v1/feeds/{FEED}/activities")).json()["results"]
    assert [a["id"] for a in listed] == [other_time["id"], first["id"]]
    # someone else's activity cannot be overwritten through the upsert
    bob = server.http(server.token("bob", RIGHTS))
    assert_problem(await post(bob, {**body, "text": "bob"}), 403)


async def test_client_id_overwrites_and_conflicts(api):
    """A client-given id that exists is overwritten; one that clashes with a foreign_id/time is 409."""
    a = (await post(api, {"id": "act-123", "verb": "v", "object": "o", "text": "1"})).json()["activities"][0]
    assert a["id"] == "act-123" and a["version"] == 1
    b = (await post(api, {"id": "act-123", "verb": "v", "object": "o", "text": "2"})).json()["activities"][0]
    assert b["id"] == "act-123" and b["version"] == 2 and b["text"] == "2"
    await post(api, {"verb": "v", "object": "o", "foreign_id": "f1", "time": "2026-01-01T00:00:00Z"})
    clash = {"id": "act-123", "verb": "v", "object": "o", "foreign_id": "f1", "time": "2026-01-01T00:00:00Z"}
    assert_problem(await post(api, clash), 409)
    # duplicates inside one batch resolve to one activity
    dup = {"verb": "v", "object": "o", "foreign_id": "f2", "time": "2026-01-02T00:00:00Z"}
    out = (await post(api, {"activities": [dup, {**dup, "text": "again"}]})).json()["activities"]
    assert out[0]["id"] == out[1]["id"] and out[1]["version"] == 2


async def _fill(api, n, feed=FEED, **extra):
    base = datetime(2026, 1, 1, tzinfo=UTC)
    items = [
        {
            "verb": "v" if i % 2 else "w",
            "object": f"o:{i}",
            "time": (base + timedelta(minutes=i)).isoformat(),
            **extra,
        }
        for i in range(n)
    ]
    out = []
    for i in range(0, n, 100):
        out += (await post(api, {"activities": items[i : i + 100]}, feed=feed)).json()["activities"]
    return out


async def test_pagination_newest_first_with_next(api):
    """Pages are newest first; following `next` visits everything exactly once."""
    written = await _fill(api, 60)
    newest_first = [a["id"] for a in reversed(written)]
    page = (await api.get(f"/v1/feeds/{FEED}/activities")).json()
    assert [a["id"] for a in page["results"]] == newest_first[:25]
    seen = []
    url = f"/v1/feeds/{FEED}/activities?limit=7"
    while url:
        page = (await api.get(url)).json()
        seen += [a["id"] for a in page["results"]]
        url = page["next"]
    assert seen == newest_first


async def test_id_bounds_offset_and_filters(api):
    """id_lt/id_lte/id_gt/id_gte, offset, verb and actor select the documented slices."""
    ids = [a["id"] for a in reversed(await _fill(api, 30))]  # newest first
    get = lambda q: api.get(f"/v1/feeds/{FEED}/activities?{q}")  # noqa: E731
    assert [a["id"] for a in (await get(f"id_lt={ids[10]}&limit=3")).json()["results"]] == ids[11:14]
    assert [a["id"] for a in (await get(f"id_lte={ids[10]}&limit=3")).json()["results"]] == ids[10:13]
    assert [a["id"] for a in (await get(f"id_gt={ids[10]}&limit=3")).json()["results"]] == ids[7:10]
    assert [a["id"] for a in (await get(f"id_gte={ids[10]}&limit=3")).json()["results"]] == ids[8:11]
    both = (await get(f"id_lt={ids[2]}&id_gt={ids[8]}")).json()
    assert [a["id"] for a in both["results"]] == ids[3:8] and both["next"] is None
    assert [a["id"] for a in (await get("offset=5&limit=2")).json()["results"]] == ids[5:7]
    verbs = {a["verb"] for a in (await get("verb=w&limit=100")).json()["results"]}
    assert verbs == {"w"}
    assert len((await get("actor=alice&limit=100")).json()["results"]) == 30
    assert (await get("actor=nobody")).json()["results"] == []
    # a cursor that is no longer in the feed is placed by the time inside the ULID
    gone = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # 2016: older than everything
    assert len((await get(f"id_gt={gone}&limit=100")).json()["results"]) == 30
    assert (await get(f"id_lt={gone}")).json()["results"] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "offset=-1", "id_lt=unknown-non-ulid"])
async def test_bad_query_parameters_are_422(api, query):
    """Out-of-range or malformed query parameters are 422 problems."""
    await _fill(api, 1)
    assert_problem(await api.get(f"/v1/feeds/{FEED}/activities?{query}"), 422)


async def test_hidden_activities_do_not_shrink_pages_silently(server, api):
    """Pages skip hidden activities but keep filling up to `limit`; `next` continues after them."""
    await _fill(api, 20, audience=[])  # only alice (the author) and admins see these
    await _fill(api, 5, feed=FEED)
    reader = server.http(server.token("bob", {"booking:*": ["member"]}))
    page = (await reader.get(f"/v1/feeds/{FEED}/activities?limit=3")).json()
    assert len(page["results"]) == 3 and page["next"]
    total, url = 0, f"/v1/feeds/{FEED}/activities?limit=3"
    while url:
        page = (await reader.get(url)).json()
        total += len(page["results"])
        url = page["next"]
    assert total == 5


async def test_trim_to_max_feed_length_and_retention(server_factory):
    """Feeds keep only max_feed_length activities, and none older than retention_days."""
    srv = await server_factory(feeds={"max_feed_length": 5, "retention_days": 1})
    api = srv.http(srv.token("alice", RIGHTS))
    await post(api, {"activities": [{"verb": "v", "object": f"o:{i}"} for i in range(8)]})
    listed = (await api.get(f"/v1/feeds/{FEED}/activities")).json()["results"]
    assert [a["object"] for a in listed] == [f"o:{i}" for i in range(7, 2, -1)]
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    await post(api, {"verb": "v", "object": "old", "time": old}, feed="booking:ret")
    listed = (await api.get("/v1/feeds/booking:ret/activities")).json()["results"]
    assert [a["object"] for a in listed] == []  # written, then dropped by the same script's retention pass
    await post(api, {"verb": "v", "object": "new"}, feed="booking:ret")
    listed = (await api.get("/v1/feeds/booking:ret/activities")).json()["results"]
    assert [a["object"] for a in listed] == ["new"]


async def test_health_ready_metrics_openapi_docs(server, api):
    """Operational endpoints answer; metrics count writes; the OpenAPI document lists the API."""
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    await post(api, {"verb": "v", "object": "o"})
    metrics = (await api.get("/metrics")).text
    for name in (
        "feed_ws_connections",
        "feed_subscriptions",
        "feed_activity_writes_total",
        "feed_deliveries_total",
        "feed_slow_consumer_closes_total",
        "feed_write_seconds_bucket",
    ):
        assert name in metrics
    assert 'feed_activity_writes_total{op="create"} 1.0' in metrics
    doc = (await api.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and "/v1/feeds/{feed}/activities" in doc["paths"]
    assert "ActivityIn" in doc["components"]["schemas"]
    docs = await api.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


async def test_concurrent_writes_get_distinct_contiguous_seqs(api):
    """Concurrent writers never share or skip a seq."""
    results = await asyncio.gather(*(post(api, {"verb": "v", "object": f"o:{i}"}) for i in range(40)))
    seqs = sorted(r.json()["activities"][0]["seq"] for r in results)
    assert seqs == list(range(1, 41))


async def test_openapi_describes_every_http_route(server, api):
    """Every HTTP route of the app (native API, notifications, dialects) is in /openapi.json."""
    from starlette.routing import Route

    doc = (await api.get("/openapi.json")).json()
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    missing = []
    for route in server.app.http.routes:
        if not isinstance(route, Route) or route.path in ("/openapi.json", "/docs"):
            continue
        if route.path.startswith("/v2/activities/"):  # Velt's routes also answer other methods with 405
            if route.path not in doc["paths"]:
                missing.append(route.path)
            continue
        for method in route.methods or ():
            if method not in ("HEAD", "OPTIONS") and (route.path, method.lower()) not in described:
                missing.append(f"{method} {route.path}")
    assert not missing


async def test_writes_sharing_a_script_call_keep_their_own_outcomes(server, api):
    """Writes issued in one tick share a script call; one refused write does not sink the others."""
    from server.acl import Principal, parse_feed_rights
    from server.errors import Forbidden

    owned = (await post(api, {"verb": "v", "object": "o", "foreign_id": "f", "time": "2026-01-01T00:00:00Z"})).json()
    bob = Principal(sub="bob", feeds=parse_feed_rights(RIGHTS), kind="jwt")
    service = server.app.service
    results = await asyncio.gather(
        service.post(bob, FEED, [{"verb": "v", "object": "b1"}], batch=False),
        service.post(
            bob, FEED, [{"verb": "v", "object": "x", "foreign_id": "f", "time": "2026-01-01T00:00:00Z"}], batch=False
        ),
        service.post(bob, FEED, [{"verb": "v", "object": "b2"}, {"verb": "v", "object": "b3"}], batch=True),
        return_exceptions=True,
    )
    assert isinstance(results[1], Forbidden)
    first, third = [orjson.loads(b) for b in results[0]], [orjson.loads(b) for b in results[2]]
    assert [a["object"] for a in first + third] == ["b1", "b2", "b3"]
    assert [a["seq"] for a in first + third] == sorted(a["seq"] for a in first + third)
    stored = (await api.get(f"/v1/feeds/{FEED}/activities/{owned['activities'][0]['id']}")).json()
    assert stored["object"] == "o" and stored["version"] == 1
