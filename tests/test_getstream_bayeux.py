"""The Bayeux (Faye) endpoint ``/faye`` on the wire: transports, refusals, several processes, bounds.

The JS client's own use of it is in ``test_getstream_js.py``; these tests speak Bayeux directly
(as the faye client does) to check what that client cannot show.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from conftest import RunningServer
from getstream_support import GETSTREAM, GS_APP, GS_KEY, GS_SECRET

pytestmark = pytest.mark.timeout(60)

CHANNEL = f"/site-{GS_APP}-feed-userbx"
FEED_TOKEN = jwt.encode({"resource": "*", "action": "*", "feed_id": "userbx"}, GS_SECRET, algorithm="HS256")
WRITE_TOKEN = jwt.encode({"resource": "*", "action": "*", "feed_id": "*"}, GS_SECRET, algorithm="HS256")


async def bayeux(http: httpx.AsyncClient, *messages: dict[str, Any], path: str = "/faye") -> list[dict[str, Any]]:
    """POST messages as the faye client's long-polling transport does."""
    response = await http.post(path, json=list(messages))
    assert response.status_code == 200, response.text
    replies: list[dict[str, Any]] = response.json()
    return replies


async def handshake(http: httpx.AsyncClient) -> str:
    [reply] = await bayeux(
        http,
        {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "id": "1"},
    )
    assert reply["successful"] is True and reply["version"] == "1.0" and reply["id"] == "1"
    assert "long-polling" in reply["supportedConnectionTypes"] and "websocket" in reply["supportedConnectionTypes"]
    client_id: str = reply["clientId"]
    return client_id


def subscribe_message(
    client_id: str, channel: str = CHANNEL, token: str = FEED_TOKEN, key: str = GS_KEY
) -> dict[str, Any]:
    ext = {"user_id": channel[1:], "api_key": key, "signature": token}
    return {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel, "ext": ext, "id": "s"}


def connect_message(client_id: str) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling", "id": "c"}


async def add_activity(srv: RunningServer, feed: str = "user/bx", **fields: Any) -> dict[str, Any]:
    """Write through the GetStream API of ``srv``."""
    activity = {"actor": "a", "verb": "v", "object": "o", **fields}
    response = await srv.http().post(
        f"/api/v1.0/feed/{feed}/", params={"api_key": GS_KEY}, headers={"Authorization": WRITE_TOKEN}, json=activity
    )
    assert response.status_code == 201, response.text
    added: dict[str, Any] = response.json()
    return added


async def test_long_polling_session(server_factory: Any) -> None:
    """handshake, subscribe, a held connect answered by a change, unsubscribe, disconnect."""
    srv = await server_factory(getstream=GETSTREAM)
    http = srv.http()
    client_id = await handshake(http)
    [sub] = await bayeux(http, subscribe_message(client_id))
    assert sub["successful"] is True and sub["subscription"] == CHANNEL
    held = asyncio.create_task(bayeux(http, connect_message(client_id)))
    await asyncio.sleep(0.2)
    assert not held.done()  # held until something arrives
    added = await add_activity(srv, foreign_id="f:1", time="2026-01-02T03:04:05.678")
    replies = await asyncio.wait_for(held, 5)
    assert replies[0]["channel"] == "/meta/connect" and replies[0]["successful"] is True
    [delivery] = replies[1:]
    assert delivery["channel"] == CHANNEL
    data = delivery["data"]
    assert data["feed"] == "user:bx" and data["app_id"] == GS_APP and data["published_at"].endswith("Z")
    assert data["new"][0]["id"] == added["id"] and data["new"][0]["time"] == "2026-01-02T03:04:05.678000"
    # Nothing queued: a connect is held for the advised timeout, then answered empty.
    replies = await bayeux(http, connect_message(client_id))
    assert [r["channel"] for r in replies] == ["/meta/connect"]
    [unsub] = await bayeux(http, {"channel": "/meta/unsubscribe", "clientId": client_id, "subscription": CHANNEL})
    assert unsub["successful"] is True
    await add_activity(srv)
    replies = await bayeux(http, connect_message(client_id))
    assert [r["channel"] for r in replies] == ["/meta/connect"]  # unsubscribed: nothing delivered
    [bye] = await bayeux(http, {"channel": "/meta/disconnect", "clientId": client_id})
    assert bye["successful"] is True
    [gone] = await bayeux(http, connect_message(client_id))
    assert gone["successful"] is False and gone["advice"]["reconnect"] == "handshake"


async def test_two_processes_share_bayeux_clients(server_factory: Any) -> None:
    """A client handshaken and subscribed on one server process gets its messages through a
    /meta/connect held by another process (state and queues live in Redis)."""
    a = await server_factory(getstream=GETSTREAM)
    b = await server_factory(getstream=GETSTREAM)
    assert a.app is not b.app and a.app.service.hub is not b.app.service.hub
    client_id = await handshake(a.http())
    [sub] = await bayeux(a.http(), subscribe_message(client_id))
    assert sub["successful"] is True
    held = asyncio.create_task(bayeux(b.http(), connect_message(client_id)))
    await asyncio.sleep(0.2)
    added = await add_activity(b)  # written on B, delivered by A's subscription, handed over by B
    replies = await asyncio.wait_for(held, 5)
    assert [r["data"]["new"][0]["id"] for r in replies[1:]] == [added["id"]]
    # And the other way round: subscribed on B, connected on A.
    other = await handshake(b.http())
    [sub] = await bayeux(b.http(), subscribe_message(other))
    assert sub["successful"] is True
    added = await add_activity(a)
    replies = await bayeux(a.http(), connect_message(other))
    assert [r["data"]["new"][0]["id"] for r in replies[1:]] == [added["id"]]


async def test_cross_origin_long_polling_and_jsonp(server_factory: Any) -> None:
    """CORS preflight with the exact origin and credentials, ``message=`` bodies, and JSONP GET."""
    srv = await server_factory(getstream=GETSTREAM)
    http = srv.http()
    origin = "https://app.example"
    preflight = await http.options(
        "/faye/",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, pragma",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "pragma" in preflight.headers["access-control-allow-headers"]
    body = "message=" + quote(json.dumps([{"channel": "/meta/handshake", "version": "1.0"}]))
    response = await http.post(
        "/faye/",
        content=body,
        headers={"Origin": origin, "Content-Type": "application/x-www-form-urlencoded", "Pragma": "no-cache"},
    )
    assert response.headers["access-control-allow-origin"] == origin
    client_id = response.json()[0]["clientId"]
    message = json.dumps([subscribe_message(client_id)])
    response = await http.get("/faye", params={"message": message, "jsonp": "__jsonp1__"})
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.text.startswith("/**/__jsonp1__(") and response.text.endswith(");")
    reply = json.loads(response.text[len("/**/__jsonp1__(") : -2])
    assert reply[0]["successful"] is True


async def test_refusals(server_factory: Any) -> None:
    """Client publishes, a wrong key, a forged signature, another user's feed, another app's
    channel and an unknown client are all refused."""
    srv = await server_factory(getstream=GETSTREAM)
    http = srv.http()
    client_id = await handshake(http)
    [pub] = await bayeux(http, {"channel": CHANNEL, "clientId": client_id, "data": {"new": []}})
    assert pub["successful"] is False and pub["error"].startswith("403")
    forged = jwt.encode({"resource": "*", "action": "*", "feed_id": "userbx"}, "another-secret" * 3, algorithm="HS256")
    other_user = jwt.encode({"user_id": "mallory"}, GS_SECRET, algorithm="HS256")
    own_user = jwt.encode({"user_id": "bx"}, GS_SECRET, algorithm="HS256")
    other_feed = jwt.encode({"resource": "*", "action": "*", "feed_id": "userzz"}, GS_SECRET, algorithm="HS256")
    for message in (
        subscribe_message(client_id, key="wrong-key"),
        subscribe_message(client_id, token=forged),
        subscribe_message(client_id, token=other_user),
        subscribe_message(client_id, token=other_feed),
        subscribe_message(client_id, channel="/site-999-feed-userbx"),
    ):
        [reply] = await bayeux(http, message)
        assert reply["successful"] is False and reply["error"] == "403::Forbidden", message
    [ok] = await bayeux(http, subscribe_message(client_id, token=own_user))
    assert ok["successful"] is True
    [unknown] = await bayeux(http, subscribe_message("no-such-client"))
    assert unknown["successful"] is False and unknown["error"].startswith("401")
    assert (
        await http.post("/faye", content=b"{not json", headers={"Content-Type": "application/json"})
    ).status_code == 400


async def test_bounded_queues_and_idle_expiry(server_factory: Any) -> None:
    """A client's queue keeps only the newest messages; a silent client expires and its hub
    subscription is dropped."""
    settings = {**GETSTREAM, "bayeux_queue": 3, "bayeux_timeout": 0.3, "bayeux_client_ttl": 4.0}
    srv = await server_factory(getstream=settings)
    http = srv.http()
    client_id = await handshake(http)
    [sub] = await bayeux(http, subscribe_message(client_id))
    assert sub["successful"] is True
    objects = [str(i) for i in range(5)]
    for obj in objects:
        await add_activity(srv, object=obj)
    await asyncio.sleep(0.3)
    replies = await bayeux(http, connect_message(client_id))
    assert replies[0]["successful"] is True, replies[0]
    assert [r["data"]["new"][0]["object"] for r in replies[1:]] == objects[-3:]
    assert "user:bx" in srv.app.service.hub.rooms
    await asyncio.sleep(6.5)  # silent past the TTL, and one sweep (every TTL/4) later
    [gone] = await bayeux(http, connect_message(client_id))
    assert gone["successful"] is False
    assert "user:bx" not in srv.app.service.hub.rooms


async def test_two_os_processes(tmp_path: Any, redis_url: str, prefix: str) -> None:
    """The same across two real ``python -m server`` processes: handshake and subscribe on one,
    /meta/connect on the other, the write through either."""
    from faults import ServerProcess

    a = ServerProcess(tmp_path, redis_url, prefix, name="a", getstream=GETSTREAM)
    b = ServerProcess(tmp_path, redis_url, prefix, name="b", getstream=GETSTREAM)
    try:
        await a.start()
        await b.start()
        async with (
            httpx.AsyncClient(base_url=a.base, timeout=10) as ha,
            httpx.AsyncClient(base_url=b.base, timeout=10) as hb,
        ):
            client_id = await handshake(ha)
            [sub] = await bayeux(ha, subscribe_message(client_id))
            assert sub["successful"] is True
            held = asyncio.create_task(bayeux(hb, connect_message(client_id)))
            await asyncio.sleep(0.3)
            response = await hb.post(
                "/api/v1.0/feed/user/bx/",
                params={"api_key": GS_KEY},
                headers={"Authorization": WRITE_TOKEN},
                json={"actor": "a", "verb": "v", "object": "across"},
            )
            assert response.status_code == 201, response.text
            replies = await asyncio.wait_for(held, 10)
            assert [r["data"]["new"][0]["object"] for r in replies[1:]] == ["across"]
    finally:
        a.stop()
        b.stop()


async def test_a_stopped_holder_sends_its_clients_to_handshake(server_factory: Any) -> None:
    """When the process holding a client's subscription stops, the client's next /meta/connect
    (on another process) is told to handshake again; subscribing anew there delivers again."""
    a = await server_factory(getstream=GETSTREAM)
    b = await server_factory(getstream=GETSTREAM)
    client_id = await handshake(a.http())
    [sub] = await bayeux(a.http(), subscribe_message(client_id))
    assert sub["successful"] is True
    await a.stop()
    [reply] = await bayeux(b.http(), connect_message(client_id))
    assert reply["successful"] is False and reply["advice"]["reconnect"] == "handshake"
    again = await handshake(b.http())
    [sub] = await bayeux(b.http(), subscribe_message(again))
    assert sub["successful"] is True
    added = await add_activity(b)
    replies = await bayeux(b.http(), connect_message(again))
    assert [r["data"]["new"][0]["id"] for r in replies[1:]] == [added["id"]]
