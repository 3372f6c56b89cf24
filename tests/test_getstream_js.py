"""The official ``getstream`` npm client (8.x), unmodified, run with node against a real server.

``tests/getstream_js/run.js`` makes the calls and prints what the client returned; these tests
check it. Realtime: ``feed.subscribe`` through the faye client to ``/faye``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
import stream
from conftest import RunningServer
from getstream_support import GETSTREAM, GS_APP, GS_KEY, GS_SECRET, in_thread, js_ready, start_node

pytestmark = pytest.mark.timeout(90)

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
CORE = {"id", "actor", "verb", "object", "target", "foreign_id", "time", "origin"}


@pytest.fixture
async def gs(server_factory: Any) -> RunningServer:
    """A server with the GetStream API on."""
    js_ready()
    srv: RunningServer = await server_factory(getstream=GETSTREAM)
    return srv


def _is_time(value: str) -> bool:
    return datetime.strptime(value, TIME_FORMAT).strftime(TIME_FORMAT) == value


async def test_js_every_flat_feed_method(gs: RunningServer) -> None:
    """Every flat-feed method of the JS client works and returns GetStream's shapes."""
    run = await start_node("flat", gs.base, user="eric")
    out = await run.finish(60)
    added = out["addActivity"]
    assert set(added) == CORE | {"duration"}
    assert added["object"] == "1" and added["target"] == "" and added["origin"] is None and _is_time(added["time"])
    assert [a["object"] for a in out["addActivities"]["activities"]] == ["a", "b"]
    assert set(out["get"]) == {"results", "next", "duration"}
    assert [a["object"] for a in out["get"]["results"]] == ["b", "a"]
    assert out["get"]["next"].startswith("/api/v1.0/feed/user/eric/?")
    assert [a["object"] for a in out["getOffset"]["results"]] == ["a"]
    assert [a["object"] for a in out["getIdLt"]["results"]] == ["a", "1"]
    assert [a["id"] for a in out["getActivityDetail"]["results"]] == [added["id"]]
    assert len(out["getEnrich"]["results"]) == 1
    assert [a["id"] for a in out["getActivitiesIds"]["results"]] == [added["id"]]
    assert [a["id"] for a in out["getActivitiesForeign"]["results"]] == [added["id"]]
    patched = out["activityPartialUpdate"]
    assert patched["product"] == {"price": 20} and patched["color"] == "blue" and patched["id"] == added["id"]
    [batch_patched] = out["activitiesPartialUpdate"]["activities"]
    assert batch_patched["color"] == "red" and "product" not in batch_patched
    assert set(out["updateActivity"]) == {"duration"}
    [after] = out["afterUpdate"]["results"]
    assert after["object"] == "edited" and after["extra"] == 1 and after["id"] == added["id"]
    assert "color" not in after  # a full replacement
    assert [a["object"] for a in out["createdByUpdate"]["results"]] == ["new"]
    assert set(out["addToMany"]) == {"duration"}
    assert [a["verb"] for a in out["timeline"]["results"]] == ["share"]
    assert out["addWithTo"]["to"] == ["notification:eric-friend"]
    assert [a["verb"] for a in out["targetFeed"]["results"]] == ["mention"]
    assert "to" not in out["targetFeed"]["results"][0]
    moved = out["updateActivityToTargets"]
    assert moved["activity"]["to"] == ["flat:eric-t"]
    assert moved["added"] == ["flat:eric-t"] and moved["removed"] == ["notification:eric-friend"]
    assert out["targetFeedAfter"]["results"] == []
    assert out["removeActivity"]["removed"] == added["id"]
    assert out["removeUnknown"]["removed"] == "01J00000000000000000000000"
    assert out["removeForeign"]["removed"] == "mention:1"
    assert [a["object"] for a in out["afterRemove"]["results"]] == ["b", "a"]


async def test_js_errors(gs: RunningServer) -> None:
    """Wrong key, wrong secret, scopes, user-token policy and bad input answer GetStream's errors."""
    out = await (await start_node("errors", gs.base, user="eve")).finish(60)

    def err(name: str) -> tuple[int, str, int]:
        body = out[name]["body"]
        assert out[name]["error"] == "StreamApiError", out[name]
        assert body["status_code"] == out[name]["status"] and "duration" in body and body["detail"]
        return body["code"], body["exception"], body["status_code"]

    assert err("wrongKey") == (2, "ApiKeyException", 401)
    assert err("wrongSecret") == (3, "SignatureException", 401)
    assert err("readOnlyWrite") == (17, "NotAllowedException", 403)
    assert "results" in out["readOnlyRead"]["ok"]
    assert err("missingObject") == (4, "InputException", 400)
    assert out["missingObject"]["body"]["exception_fields"] == {"object": ["Missing data for required field."]}
    assert err("updateNoForeignId") == (4, "InputException", 400)
    assert err("updateBadTime") == (4, "InputException", 400)
    assert err("updateChangesTo") == (4, "InputException", 400)
    assert err("toNotAList") == (4, "InputException", 400)
    assert out["userOwnFeed"]["ok"]["actor"] == "SU:eve"
    assert err("userOtherFeed") == (17, "NotAllowedException", 403)
    assert err("userOtherActor") == (17, "NotAllowedException", 403)
    assert err("userToUserFeed") == (17, "NotAllowedException", 403)
    assert out["userToNotification"]["ok"]["to"] == ["notification:someone-else"]
    assert [a["actor"] for a in out["userReadOwn"]["ok"]["results"]] == ["SU:eve", "SU:eve", "a"]


def _python_client(gs: RunningServer) -> Any:
    return stream.connect(GS_KEY, GS_SECRET, GS_APP, base_url=f"http://localhost:{gs.settings.server.port}")


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
async def test_js_subscribe_receives_changes_from_both_apis(gs: RunningServer, transport: str) -> None:
    """feed.subscribe gets GetStream's realtime payload for changes made through GetStream and
    through the native API; a token signed with another secret is refused."""
    tampered = jwt.encode({"resource": "*", "action": "*", "feed_id": "user222"}, "x" * 32, algorithm="HS256")
    subs = [
        {"label": "good", "slug": "user", "id": "rt1", "noWebsocket": transport != "websocket"},
        {"label": "second", "slug": "user", "id": "rt2", "shared": True},  # same faye client
        {"label": "tampered", "slug": "user", "id": "111", "shared": True, "feedToken": tampered},
        {"label": "forged", "slug": "user", "id": "rt1", "token": "other-secret"},
    ]
    expect = {"good": 3, "second": 1}
    run = await start_node("subscribe", gs.base, subscriptions=subs, expect=expect, wait=15000)
    try:
        ready = await run.line(30)
        assert ready["status"]["good"] == ready["status"]["second"] == "subscribed"
        assert ready["status"]["forged"] != "subscribed" and ready["status"]["tampered"] != "subscribed"
        client = _python_client(gs)
        await in_thread(lambda: client.feed("user", "rt2").add_activity({"actor": "a", "verb": "v", "object": "2"}))
        await in_thread(lambda: client.feed("user", "111").add_activity({"actor": "a", "verb": "v", "object": "3"}))
        when = datetime.now(UTC).replace(tzinfo=None)
        added = await in_thread(
            lambda: client.feed("user", "rt1").add_activity(
                {"actor": "bob", "verb": "post", "object": "1", "foreign_id": "p:1", "time": when}
            )
        )
        native = gs.http(gs.token("admin", admin=True))
        response = await native.post(
            "/v1/feeds/user:rt1/activities", json={"verb": "native", "object": "n", "audience": ["everyone"]}
        )
        assert response.status_code == 201, response.text
        await in_thread(lambda: client.feed("user", "rt1").remove_activity(added["id"]))
        out = await run.finish(30)
    finally:
        run.kill()
    messages = out["received"]["good"]
    assert [len(m["new"]) for m in messages] == [1, 1, 0]
    first, second, third = messages
    assert set(first) == {"new", "deleted", "deleted_foreign_ids", "feed", "app_id", "published_at"}
    assert first["feed"] == "user:rt1" and first["app_id"] == GS_APP
    assert first["new"][0]["id"] == added["id"] and first["new"][0]["object"] == "1"
    assert first["new"][0]["time"] == added["time"].strftime(TIME_FORMAT)
    assert second["new"][0]["verb"] == "native" and second["new"][0]["actor"] == "admin"
    assert third["deleted"] == [added["id"]]
    assert third["deleted_foreign_ids"] == [["p:1", added["time"].strftime(TIME_FORMAT)]]
    assert out["received"]["forged"] == [] and out["received"]["tampered"] == []
    assert [m["new"][0]["object"] for m in out["received"]["second"]] == ["2"]


async def test_js_subscribe_applies_the_audience_rule(gs: RunningServer) -> None:
    """A user-token subscriber receives only what the audience rule lets it see."""
    subs = [{"label": "alice", "slug": "user", "id": "alice", "token": "user"}]
    run = await start_node("subscribe", gs.base, subscriptions=subs, expect={"alice": 2}, wait=8000, settle=300)
    try:
        ready = await run.line(30)
        assert ready["status"]["alice"] == "subscribed"
        native = gs.http(gs.token("admin", admin=True))
        for verb, audience in (
            ("hidden", ["identity:bob"]),
            ("seen-everyone", ["everyone"]),
            ("hidden-role", ["role:accounting"]),
            ("seen-alice", ["identity:alice"]),
        ):
            response = await native.post(
                "/v1/feeds/user:alice/activities", json={"verb": verb, "object": "o", "audience": audience}
            )
            assert response.status_code == 201, response.text
        out = await run.finish(30)
    finally:
        run.kill()
    assert [m["new"][0]["verb"] for m in out["received"]["alice"]] == ["seen-everyone", "seen-alice"]


async def test_js_unsubscribe(gs: RunningServer) -> None:
    """feed.unsubscribe() stops the deliveries."""
    run = await start_node("unsubscribe", gs.base, user="unsub", wait=1500)
    try:
        await run.line(30)
        client = _python_client(gs)
        feed = client.feed("user", "unsub")
        await in_thread(lambda: feed.add_activity({"actor": "a", "verb": "before", "object": "o"}))
        assert (await run.line(30))["unsubscribed"] is True
        await in_thread(lambda: feed.add_activity({"actor": "a", "verb": "after", "object": "o"}))
        out = await run.finish(30)
    finally:
        run.kill()
    assert [m["new"][0]["verb"] for m in out["received"]] == ["before"]
