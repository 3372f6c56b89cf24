"""The official ``stream-python`` client (5.x), sync and async, unmodified, against a real server.

The client reaches only ``localhost`` by name (any other host gets an ``api.`` prefix), so it is
pointed at ``base_url="http://localhost:<port>"`` of a server bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import stream
from conftest import TIMEOUT, RunningServer, recv_until, redis_client, subscribe
from getstream_support import GETSTREAM, GS_APP, GS_KEY, GS_SECRET, in_thread
from stream.exceptions import ApiKeyException, InputException, SignatureException

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def gs(server_factory: Any) -> RunningServer:
    """A server with the GetStream API on."""
    srv: RunningServer = await server_factory(getstream=GETSTREAM)
    return srv


class Client:
    """One face over the sync and the async client: every call is awaited (sync ones in a thread)."""

    def __init__(self, gs: RunningServer, mode: str, key: str = GS_KEY, secret: str = GS_SECRET) -> None:
        base = f"http://localhost:{gs.settings.server.port}"
        self.raw = stream.connect(key, secret, GS_APP, base_url=base, use_async=mode == "async")

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        return await in_thread(lambda: fn(*args, **kwargs))


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


@MODES
async def test_python_add_read_and_remove(gs: RunningServer, mode: str) -> None:
    """add_activity/add_activities/get (limit, offset, id_* bounds, enrich)/remove_activity."""
    c = Client(gs, mode)
    feed = c.raw.feed("user", f"py-{mode}")
    when = utcnow()
    added = await c(
        feed.add_activity, {"actor": "eric", "verb": "tweet", "object": 1, "foreign_id": "t:1", "time": when}
    )
    assert added["object"] == "1" and added["target"] == "" and added["origin"] is None and "duration" in added
    assert isinstance(added["time"], datetime) and added["time"].replace(tzinfo=None) == when.replace(
        microsecond=when.microsecond // 1000 * 1000
    )
    assert {"seq", "version", "updated_at", "created_at", "feed", "audience"}.isdisjoint(added)
    many = await c(
        feed.add_activities,
        [{"actor": "eric", "verb": "v", "object": str(i)} for i in range(3)],
    )
    assert [a["object"] for a in many["activities"]] == ["0", "1", "2"]
    page = await c(feed.get, limit=3)
    assert [a["object"] for a in page["results"]] == ["2", "1", "0"] and "duration" in page
    assert page["next"]
    assert [a["object"] for a in (await c(feed.get, limit=2, offset=2))["results"]] == ["0", "1"]
    ids = [a["id"] for a in page["results"]]
    assert [a["id"] for a in (await c(feed.get, limit=5, id_lt=ids[0]))["results"]] == [ids[1], ids[2], added["id"]]
    assert [a["id"] for a in (await c(feed.get, limit=5, id_lte=ids[1]))["results"]] == [ids[1], ids[2], added["id"]]
    assert [a["id"] for a in (await c(feed.get, limit=5, id_gt=ids[2]))["results"]] == ids[:2]
    assert [a["id"] for a in (await c(feed.get, limit=5, id_gte=ids[1]))["results"]] == ids[:2]
    assert len((await c(feed.get, enrich=True, limit=1))["results"]) == 1
    assert (await c(feed.remove_activity, ids[0]))["removed"] == ids[0]
    assert (await c(feed.remove_activity, "01J00000000000000000000000"))["removed"]
    assert (await c(feed.remove_activity, foreign_id="t:1"))["removed"] == "t:1"
    assert (await c(feed.remove_activity, foreign_id="never:there"))["removed"] == "never:there"
    assert [a["object"] for a in (await c(feed.get))["results"]] == ["1", "0"]


@MODES
async def test_python_uniqueness(gs: RunningServer, mode: str) -> None:
    """Same (foreign_id, time) replaces and keeps the id; same content at the same time collapses."""
    c = Client(gs, mode)
    feed = c.raw.feed("user", f"uniq-{mode}")
    when = utcnow()
    first = await c(feed.add_activity, {"actor": "a", "verb": "v", "object": "1", "foreign_id": "f:1", "time": when})
    again = await c(feed.add_activity, {"actor": "a", "verb": "v", "object": "3", "foreign_id": "f:1", "time": when})
    assert again["id"] == first["id"]
    same = {"actor": "a", "verb": "w", "object": "x", "time": when}
    one = await c(feed.add_activity, same)
    two = await c(feed.add_activity, dict(same))
    assert one["id"] == two["id"]
    results = (await c(feed.get))["results"]
    assert sorted(a["object"] for a in results) == ["3", "x"]


@MODES
async def test_python_activities_endpoints(gs: RunningServer, mode: str) -> None:
    """get_activities (ids, foreign_id_times), update_activities/update_activity (update and create),
    activity_partial_update (id, foreign_id+time) and activities_partial_update."""
    c = Client(gs, mode)
    feed = c.raw.feed("user", f"acts-{mode}")
    when = utcnow()
    act = await c(
        feed.add_activity,
        {"actor": "a", "verb": "v", "object": "o", "foreign_id": "x:1", "time": when, "product": {"name": "p"}},
    )
    by_id = await c(c.raw.get_activities, ids=[act["id"], "01J00000000000000000000000"])
    assert [a["id"] for a in by_id["results"]] == [act["id"]]
    by_fid = await c(c.raw.get_activities, foreign_id_times=[("x:1", act["time"])])
    assert by_fid["results"] == by_id["results"]
    assert (await c(c.raw.get_activities, ids=["01J00000000000000000000000"]))["results"] == []

    patched = await c(c.raw.activity_partial_update, id=act["id"], set={"product.price": 9, "color": "red"}, unset=[])
    [doc] = patched["activities"]
    expected = {**by_id["results"][0], "product": {"name": "p", "price": 9}, "color": "red"}
    assert doc == expected
    patched = await c(
        c.raw.activity_partial_update, foreign_id="x:1", time=act["time"], set={}, unset=["product.name", "color"]
    )
    assert patched["activities"][0]["product"] == {"price": 9} and "color" not in patched["activities"][0]
    batch = await c(
        c.raw.activities_partial_update, [{"id": act["id"], "set": {"n": 1}}, {"id": act["id"], "unset": ["n"]}]
    )
    assert len(batch["activities"]) == 2 and "n" not in batch["activities"][1]

    updated = await c(
        c.raw.update_activity, {"actor": "a", "verb": "v", "object": "new", "foreign_id": "x:1", "time": act["time"]}
    )
    assert "duration" in updated
    [doc] = (await c(c.raw.get_activities, ids=[act["id"]]))["results"]
    assert doc["object"] == "new" and "product" not in doc
    later = when + timedelta(seconds=1)
    created = await c(
        c.raw.update_activities, [{"actor": "a", "verb": "v", "object": "made", "foreign_id": "x:2", "time": later}]
    )
    assert created
    [made] = (await c(c.raw.get_activities, foreign_id_times=[("x:2", later)]))["results"]
    assert made["object"] == "made"


@MODES
async def test_python_add_to_many_and_to_targets(gs: RunningServer, mode: str) -> None:
    """add_to_many puts one activity in each feed; `to` copies (Python's "feed token" entries) and
    update_activity_to_targets (new, added, removed)."""
    c = Client(gs, mode)
    user = f"many-{mode}"
    when = utcnow()
    await c(
        c.raw.add_to_many,
        {"actor": "a", "verb": "v", "object": "o", "time": when},
        [f"timeline:{user}", f"flat:{user}"],
    )
    [t] = (await c(c.raw.feed("timeline", user).get))["results"]
    [f] = (await c(c.raw.feed("flat", user).get))["results"]
    assert t == f
    feed = c.raw.feed("user", user)
    act = await c(
        feed.add_activity,
        {"actor": "a", "verb": "v", "object": "o", "foreign_id": "m:1", "time": when, "to": [f"notification:{user}"]},
    )
    assert act["to"] == [f"notification:{user}"]  # the token Python appends is stripped
    assert len((await c(c.raw.feed("notification", user).get))["results"]) == 1
    moved = await c(feed.update_activity_to_targets, "m:1", when, new_targets=[f"flat:{user}-b"])
    assert moved["activity"]["to"] == [f"flat:{user}-b"] and moved["removed"] == [f"notification:{user}"]
    assert (await c(c.raw.feed("notification", user).get))["results"] == []
    moved = await c(feed.update_activity_to_targets, "m:1", when, added_targets=[f"flat:{user}-c"])
    assert moved["activity"]["to"] == [f"flat:{user}-b", f"flat:{user}-c"] and moved["added"] == [f"flat:{user}-c"]
    moved = await c(feed.update_activity_to_targets, "m:1", when, removed_targets=[f"flat:{user}-b", f"flat:{user}-c"])
    assert "to" not in moved["activity"]


@MODES
async def test_python_errors(gs: RunningServer, mode: str) -> None:
    """Wrong key, wrong secret and bad input raise the client's GetStream exceptions."""
    with pytest.raises(ApiKeyException):
        bad = Client(gs, mode, key="wrong", secret="also-wrong-" + "w" * 24)
        await bad(bad.raw.feed("user", "x").get)
    with pytest.raises(SignatureException):
        bad = Client(gs, mode, secret="not-the-secret-" + "z" * 20)
        await bad(bad.raw.feed("user", "x").get)
    c = Client(gs, mode)
    with pytest.raises(InputException) as missing:
        await c(c.raw.feed("user", "x").add_activity, {"verb": "v", "object": "o"})
    assert missing.value.status_code == 400
    with pytest.raises(InputException):
        await c(c.raw.update_activities, [{"actor": "a", "verb": "v", "object": "o", "foreign_id": "f"}])
    with pytest.raises(InputException):
        await c(c.raw.feed("user", "x").get, limit="many")


def _token(**claims: Any) -> str:
    return jwt.encode(claims, GS_SECRET, algorithm="HS256")


async def _gs_call(gs: RunningServer, method: str, path: str, token: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """A raw call as the clients make it: ?api_key=, raw JWT in Authorization, stream-auth-type."""
    client = gs.http()
    headers = {"Authorization": token, "stream-auth-type": "jwt", **kwargs.pop("headers", {})}
    params = {"api_key": GS_KEY, **kwargs.pop("params", {})}
    response = await client.request(method, "/api/v1.0/" + path, headers=headers, params=params, **kwargs)
    body = response.json()
    assert "duration" in body, body
    return response.status_code, body


async def test_scopes_are_enforced(gs: RunningServer) -> None:
    """Feed scope, action, resource, expiry and the user-token policy map onto rights."""
    activity = {"actor": "a", "verb": "v", "object": "o"}
    status, body = await _gs_call(gs, "GET", "feed/user/alice/", _token(resource="feed", action="*", feed_id="userbob"))
    assert (status, body["code"], body["exception"]) == (403, 17, "NotAllowedException")
    read_only = _token(resource="*", action="read", feed_id="useralice")
    assert (await _gs_call(gs, "GET", "feed/user/alice/", read_only))[0] == 200
    status, body = await _gs_call(gs, "POST", "feed/user/alice/", read_only, json=activity)
    assert (status, body["code"]) == (403, 17)
    wrong_resource = _token(resource="follower", action="*", feed_id="*")
    assert (await _gs_call(gs, "GET", "feed/user/alice/", wrong_resource))[0] == 403
    expired = _token(resource="*", action="*", feed_id="*", exp=int(datetime.now(UTC).timestamp()) - 60)
    status, body = await _gs_call(gs, "GET", "feed/user/alice/", expired)
    assert (status, body["code"], body["exception"]) == (401, 3, "SignatureException")
    status, body = await _gs_call(gs, "GET", "feed/user/alice/", "not-a-jwt")
    assert (status, body["code"]) == (401, 3)
    status, body = await _gs_call(gs, "GET", "activities/", _token(user_id="alice"), params={"ids": "x"})
    assert status == 200 and body["results"] == []
    # A user removes its own activities from its feed, not other actors' ones there.
    server = _token(resource="*", action="*", feed_id="*")
    _, theirs = await _gs_call(
        gs, "POST", "feed/user/alice/", server, json={"actor": "bob", "verb": "v", "object": "o"}
    )
    _, own = await _gs_call(
        gs, "POST", "feed/user/alice/", _token(user_id="alice"), json={"actor": "alice", "verb": "v", "object": "o"}
    )
    status, body = await _gs_call(gs, "DELETE", f"feed/user/alice/{theirs['id']}/", _token(user_id="alice"))
    assert (status, body["code"]) == (403, 17)
    status, _ = await _gs_call(gs, "DELETE", f"feed/user/alice/{own['id']}/", _token(user_id="alice"))
    assert status == 200
    status, _ = await _gs_call(gs, "POST", "activities/", _token(user_id="alice"), json={"activities": [activity]})
    assert status == 403
    status, _ = await _gs_call(
        gs, "POST", "feed/add_to_many/", _token(user_id="alice"), json={"activity": activity, "feeds": ["user:alice"]}
    )
    assert status == 403


async def test_wire_details(gs: RunningServer) -> None:
    """DELETE with a JSON body, Content-Type json on GET, query booleans True/true/1, unknown
    endpoints and six-digit zone-less times that round-trip exactly through a lookup."""
    token = _token(resource="*", action="*", feed_id="*")
    for i, flag in enumerate(("True", "true", "1")):
        activity = {
            "actor": "a",
            "verb": "v",
            "object": "o",
            "foreign_id": f"b:{i}",
            "time": "2026-01-02T03:04:05.678901",
        }
        status, added = await _gs_call(gs, "POST", "feed/user/wire/", token, json=activity)
        assert status == 201 and added["time"] == "2026-01-02T03:04:05.678000"
        status, found = await _gs_call(
            gs,
            "GET",
            "activities/",
            token,
            params={"foreign_ids": f"b:{i}", "timestamps": added["time"]},
            headers={"Content-Type": "application/json"},
        )
        assert [a["id"] for a in found["results"]] == [added["id"]]
        status, found = await _gs_call(
            gs,
            "GET",
            "activities/",
            token,
            params={"foreign_ids": f"b:{i}", "timestamps": "2026-01-02T03:04:05.678901Z"},
        )
        assert [a["id"] for a in found["results"]] == [added["id"]]
        status, removed = await _gs_call(
            gs,
            "DELETE",
            f"feed/user/wire/b:{i}/",
            token,
            params={"foreign_id": flag},
            content=b"{}",
            headers={"Content-Type": "application/json"},
        )
        assert status == 200 and removed["removed"] == f"b:{i}"
    status, page = await _gs_call(gs, "GET", "feed/user/wire/", token)
    assert page["results"] == [] and page["next"] == ""
    status, body = await _gs_call(gs, "GET", "no/such/endpoint/", token)
    assert (status, body["exception"]) == (404, "DoesNotExistException")
    # Browsers: a preflight, then the call with any Origin.
    preflight = await gs.http().options(
        "/api/v1.0/feed/user/wire/",
        headers={"Origin": "https://app.example", "Access-Control-Request-Headers": "authorization,stream-auth-type"},
    )
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
    assert "Stream-Auth-Type" in preflight.headers["access-control-allow-headers"]
    status, _ = await _gs_call(gs, "GET", "feed/user/wire/", token, headers={"Origin": "https://app.example"})
    assert status == 200


async def test_one_activity_model_with_the_native_api(gs: RunningServer) -> None:
    """What GetStream writes the native API reads (and pushes live), and the reverse."""
    admin = gs.token("admin", admin=True)
    ws = await gs.ws(admin)
    await subscribe(ws, "user:shared")
    c = Client(gs, "sync")
    feed = c.raw.feed("user", "shared")
    added = await c(feed.add_activity, {"actor": "gs-user", "verb": "post", "object": "o", "custom": {"k": 1}})
    event = await recv_until(ws, "activity")
    assert event["event"] == "created" and event["activity"]["id"] == added["id"]
    assert event["activity"]["audience"] == [{"type": "everyone"}] and event["activity"]["custom"] == {"k": 1}
    native = gs.http(admin)
    listed = (await native.get("/v1/feeds/user:shared/activities")).json()["results"]
    assert [a["id"] for a in listed] == [added["id"]] and listed[0]["actor"] == {"id": "gs-user"}
    response = await native.post(
        "/v1/feeds/user:shared/activities",
        json={"verb": "native", "object": {"id": "b-1", "type": "booking"}, "audience": ["members"]},
    )
    assert response.status_code == 201
    [theirs, _] = (await c(feed.get))["results"]
    assert theirs["verb"] == "native" and theirs["actor"] == "admin" and theirs["object"] == "b-1"
    assert theirs["audience"] == [{"type": "members"}] and theirs["foreign_id"] == "" and theirs["origin"] is None
    patched = await c(c.raw.activity_partial_update, id=theirs["id"], set={"note": "x"}, unset=[])
    assert patched["activities"][0]["note"] == "x"
    # The native object form survives an update through GetStream (it is shown as its id there).
    [native_doc, _] = (await native.get("/v1/feeds/user:shared/activities")).json()["results"]
    assert native_doc["object"] == {"id": "b-1", "type": "booking"} and native_doc["note"] == "x"


async def test_api_off_without_key(server_factory: Any) -> None:
    """No [getstream] api_key: the GetStream surface does not exist."""
    srv = await server_factory()
    response = await srv.http().get("/api/v1.0/feed/user/x/", params={"api_key": "k"})
    assert response.status_code == 404
    assert (await srv.http().post("/faye", json=[{"channel": "/meta/handshake"}])).status_code in (404, 405)


async def test_rate_limit_answers_in_getstream_shape(server_factory: Any) -> None:
    """Over the HTTP rate limit, GetStream clients get GetStream's RateLimitReached (code 9)."""
    srv = await server_factory(getstream=GETSTREAM, server={"http_rate_limit": "1/minute"})
    token = _token(resource="*", action="*", feed_id="*")
    assert (await _gs_call(srv, "GET", "feed/user/rl/", token))[0] == 200
    status, body = await _gs_call(srv, "GET", "feed/user/rl/", token)
    assert (status, body["code"], body["exception"]) == (429, 9, "RateLimitReached")


async def test_index_forgets_activities_gone_elsewhere(gs: RunningServer) -> None:
    """An activity deleted through the native API is not found by id any more, and its entry in
    the GetStream id index is dropped when met."""
    token = _token(resource="*", action="*", feed_id="*")
    _, added = await _gs_call(gs, "POST", "feed/user/idx/", token, json={"actor": "a", "verb": "v", "object": "o"})
    ids_key, _ = gs.app.keys.getstream_index(GS_APP)
    client = redis_client(gs.settings.redis.url)
    try:
        assert await asyncio.wait_for(client.hget(ids_key, added["id"]), TIMEOUT) == b"user:idx"
        native = gs.http(gs.token("admin", admin=True))
        assert (await native.delete(f"/v1/feeds/user:idx/activities/{added['id']}")).status_code == 204
        _, found = await _gs_call(gs, "GET", "activities/", token, params={"ids": added["id"]})
        assert found["results"] == []
        assert await asyncio.wait_for(client.hget(ids_key, added["id"]), TIMEOUT) is None
    finally:
        await client.aclose()
