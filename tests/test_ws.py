"""The WebSocket protocol (SPEC §5) with real clients: replies, errors, limits and close codes."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import websockets
from conftest import nothing_more, recv, recv_until, send, subscribe
from websockets.exceptions import ConnectionClosed, InvalidStatus

RIGHTS = {"room:*": ["read", "write", "member"]}
ACTIVITY = {"verb": "post", "object": "o:1"}


async def test_ping_pong_and_ref_echo(server):
    """Every reply echoes the ref of its message."""
    ws = await server.ws(server.token("a", RIGHTS))
    await send(ws, {"type": "ping", "ref": "p-1"})
    assert await recv(ws) == {"type": "pong", "ref": "p-1"}
    await send(ws, {"type": "ping", "ref": 42})
    assert await recv(ws) == {"type": "pong", "ref": 42}


async def test_errors_keep_the_connection_open(server):
    """Malformed JSON, unknown types, invalid activities and missing rights are per-message errors."""
    ws = await server.ws(server.token("a", {"room:*": ["read"]}))
    await ws.send("{not json")
    assert (await recv(ws))["code"] == "bad_request"
    await send(ws, {"type": "dance", "ref": "d"})
    error = await recv(ws)
    assert error == {**error, "type": "error", "ref": "d", "code": "invalid"}
    await send(ws, {"type": "publish", "ref": "p", "feed": "room:1", "activity": {"verb": "v"}})
    error = await recv(ws)
    assert error["code"] == "forbidden"  # rights are checked before the body
    await send(ws, {"type": "subscribe", "ref": "s", "feed": "elsewhere"})
    assert (await recv(ws))["code"] == "forbidden"
    await send(ws, {"type": "subscribe", "ref": "s", "feed": "bad feed"})
    assert (await recv(ws))["code"] == "invalid"
    await send(ws, {"type": "ping", "ref": "still-open"})
    assert (await recv(ws))["type"] == "pong"


async def test_invalid_publish_lists_fields(server):
    """A publish with invalid activities gets an `invalid` error listing each field."""
    ws = await server.ws(server.token("a", RIGHTS))
    await send(ws, {"type": "publish", "ref": 1, "feed": "room:1", "activities": [ACTIVITY, {"verb": "v"}]})
    error = await recv(ws)
    assert error["code"] == "invalid" and error["ref"] == 1
    assert [e["loc"] for e in error["errors"]] == ["activities.1.object"]
    await send(ws, {"type": "publish", "ref": 2, "feed": "room:1", "activity": {**ACTIVITY, "text": "x" * 11000}})
    assert (await recv(ws))["code"] == "too_large"


async def test_batch_publish_and_unsubscribe(server):
    """A batch publish is acked in order and pushed; after unsubscribe nothing more arrives."""
    token = server.token("a", RIGHTS)
    ws = await server.ws(token)
    await subscribe(ws, "room:1")
    await send(
        ws,
        {
            "type": "publish",
            "ref": "b",
            "feed": "room:1",
            "activities": [{**ACTIVITY, "object": f"o:{i}"} for i in range(3)],
        },
    )
    messages = [await recv(ws) for _ in range(4)]
    ack = next(m for m in messages if m["type"] == "ack")
    events = [m for m in messages if m["type"] == "activity"]
    assert [a["object"] for a in ack["activities"]] == ["o:0", "o:1", "o:2"]
    assert [e["seq"] for e in events] == [1, 2, 3]
    await send(ws, {"type": "unsubscribe", "ref": "u", "feed": "room:1"})
    assert await recv(ws) == {"type": "unsubscribed", "feed": "room:1", "ref": "u"}
    await server.http(token).post("/v1/feeds/room:1/activities", json=ACTIVITY)
    await nothing_more(ws)


async def test_several_feeds_on_one_connection_and_resubscribe(server):
    """One connection follows several feeds; subscribing twice does not duplicate events."""
    token = server.token("a", RIGHTS)
    ws = await server.ws(token)
    await subscribe(ws, "room:a")
    await subscribe(ws, "room:b")
    await subscribe(ws, "room:a")
    http = server.http(token)
    await http.post("/v1/feeds/room:a/activities", json=ACTIVITY)
    await http.post("/v1/feeds/room:b/activities", json=ACTIVITY)
    feeds = sorted([(await recv(ws))["feed"], (await recv(ws))["feed"]])
    assert feeds == ["room:a", "room:b"]
    await nothing_more(ws)


async def test_events_arrive_in_seq_order_under_concurrent_writes(server):
    """Concurrent writers: every subscriber sees each seq once, in increasing order."""
    token = server.token("a", RIGHTS)
    watchers = [await server.ws(token) for _ in range(3)]
    for ws in watchers:
        await subscribe(ws, "room:c")
    http = server.http(token)
    await asyncio.gather(*(http.post("/v1/feeds/room:c/activities", json=ACTIVITY) for _ in range(50)))
    for ws in watchers:
        seqs = [(await recv(ws))["seq"] for _ in range(50)]
        assert seqs == list(range(1, 51))


async def test_first_message_other_than_auth_stays_anonymous(server):
    """A connection whose first message is not auth is anonymous and that message is handled."""
    ws = await server.ws()
    await send(ws, {"type": "ping", "ref": 1})
    assert (await recv(ws))["type"] == "pong"
    await send(ws, {"type": "publish", "ref": 2, "feed": "room:1", "activity": ACTIVITY})
    assert (await recv(ws))["code"] == "unauthorized"
    await subscribe(ws, "public:news")  # public feeds are open to anonymous readers


async def test_silent_connection_is_closed_4001(server_factory):
    """A connection that sends nothing within auth_timeout is closed with 4001."""
    srv = await server_factory(server={"auth_timeout": 0.5})
    ws = await srv.ws()
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        await recv(ws, timeout=5)
    assert ws.close_code == 4001 and 0.4 < time.monotonic() - started < 3


def test_auth_timeout_defaults_to_five_seconds():
    """SPEC §3: a WebSocket that sends nothing within 5 s is closed (the default)."""
    from server.config import load_settings

    assert load_settings(None).server.auth_timeout == 5.0


async def test_header_authenticated_connection_needs_no_message(server_factory):
    """With credentials in the handshake the auth timeout does not apply."""
    srv = await server_factory(server={"auth_timeout": 0.3})
    ws = await srv.ws(srv.token("a", RIGHTS), auth="header")
    await asyncio.sleep(0.6)
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"


async def test_frame_over_max_frame_bytes_closes_1009(server_factory):
    """A client frame larger than max_frame_bytes closes the connection with 1009."""
    srv = await server_factory(server={"max_frame_bytes": 4096})
    ws = await srv.ws(srv.token("a", RIGHTS))
    await ws.send('{"type":"ping","pad":"' + "x" * 5000 + '"}')
    with pytest.raises(ConnectionClosed):
        await recv(ws)
    assert ws.close_code == 1009


async def test_origin_allowlist(server_factory):
    """Browser origins outside the allowlist get 403 at the handshake; same host is fine by default."""
    srv = await server_factory()
    with pytest.raises(InvalidStatus) as info:
        await srv.ws(origin="http://evil.example")
    assert info.value.response.status_code == 403
    host = f"http://{srv.settings.server.host}:{srv.settings.server.port}"
    await srv.ws(origin=host)
    await srv.ws()  # no Origin: not a browser
    listed = await server_factory(server={"allowed_origins": ["https://app.example"]})
    await listed.ws(origin="https://app.example")
    with pytest.raises(InvalidStatus):
        await listed.ws(origin=host.replace("127.0.0.1", "localhost"))


def _tiny_socket(host: str, port: int) -> socket.socket:
    """A client socket with a small receive buffer, so a client that stops reading backs up fast."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    sock.setblocking(False)
    return sock


async def test_slow_consumer_is_closed_4008_and_others_are_unaffected(server_factory):
    """A client that stops reading overflows its bounded queue and gets 4008; readers keep up."""
    srv = await server_factory(server={"queue_size": 20, "close_timeout": 5})
    token = srv.token("a", RIGHTS)
    host, port = srv.settings.server.host, srv.settings.server.port
    slow = await websockets.connect(srv.ws_url, sock=_tiny_socket(host, port), max_queue=1, open_timeout=5)
    srv.clients.append(slow)
    await send(slow, {"type": "auth", "token": token})
    await recv(slow)
    await subscribe(slow, "room:flood")
    readers = [await srv.ws(token) for _ in range(3)]
    for ws in readers:
        await subscribe(ws, "room:flood")

    http = srv.http(token)
    written = 0
    for _ in range(60):  # ~14 MB at most: more than the kernel buffers of one connection absorb
        batch = [{**ACTIVITY, "text": "x" * 4500} for _ in range(50)]
        assert (await http.post("/v1/feeds/room:flood/activities", json={"activities": batch})).status_code == 201
        written += 50
        if "feed_slow_consumer_closes_total 1.0" in (await http.get("/metrics")).text:
            break
    for ws in readers:  # the readers got everything, in order
        assert [(await recv(ws))["seq"] for _ in range(written)] == list(range(1, written + 1))
    got = 0
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(slow)
            got += 1
    assert slow.close_code == 4008 and got < written


async def test_peer_that_never_reads_is_dropped(server_factory):
    """Even the close frame cannot reach a peer that never reads: it is aborted after close_timeout."""
    srv = await server_factory(server={"queue_size": 10, "close_timeout": 0.5})
    token = srv.token("a", RIGHTS)
    host, port = srv.settings.server.host, srv.settings.server.port
    reader, writer = await asyncio.open_connection(sock=_tiny_socket(host, port))
    writer.write(
        f"GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"101" in head.split(b"\r\n")[0]
    frame = b'{"type":"subscribe","feed":"room:dead"}'
    writer.write(bytes([0x81, 0x80 | len(frame)]) + b"\x00\x00\x00\x00" + frame)  # masked with a zero key
    await writer.drain()
    await asyncio.sleep(0.2)
    http = srv.http(token)
    metrics = ""
    for _ in range(60):
        batch = [{**ACTIVITY, "text": "x" * 4500} for _ in range(50)]
        await http.post("/v1/feeds/room:dead/activities", json={"activities": batch})
        metrics = (await http.get("/metrics")).text
        if "feed_slow_consumer_closes_total 1.0" in metrics:
            break
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "feed_ws_connections 0.0" not in metrics:
        await asyncio.sleep(0.1)
        metrics = (await http.get("/metrics")).text
    assert "feed_slow_consumer_closes_total 1.0" in metrics
    assert "feed_ws_connections 0.0" in metrics
    writer.transport.abort()


async def test_closed_connection_leaves_no_subscription(server):
    """Closing a connection removes its subscriptions (gauges go back to zero)."""
    ws = await server.ws(server.token("a", RIGHTS))
    await subscribe(ws, "room:x")
    http = server.http()
    assert "feed_subscriptions 1.0" in (await http.get("/metrics")).text
    await ws.close()
    for _ in range(50):
        if "feed_subscriptions 0.0" in (await http.get("/metrics")).text:
            break
        await asyncio.sleep(0.05)
    assert "feed_subscriptions 0.0" in (await http.get("/metrics")).text
    assert not server.app.hub.rooms


async def test_receives_ack_before_own_event_order_is_consistent(server):
    """A publisher subscribed to the feed receives both the ack and the event of its write."""
    ws = await server.ws(server.token("a", RIGHTS))
    await subscribe(ws, "room:self")
    await send(ws, {"type": "publish", "ref": "x", "feed": "room:self", "activity": ACTIVITY})
    ack = await recv_until(ws, "ack")
    assert ack["ref"] == "x"


async def test_pipelined_publishes_are_acked_and_stored_in_order(server):
    """Publishes sent back to back (without waiting for acks) are stored and acked in send order."""
    token = server.token("a", RIGHTS)
    ws = await server.ws(token)
    for i in range(300):
        await ws.send(f'{{"type":"publish","ref":{i},"feed":"room:pipe","activity":{{"verb":"v","object":"o:{i}"}}}}')
    await send(ws, {"type": "ping", "ref": "after"})  # non-publish commands wait for earlier publishes
    replies = [await recv(ws) for _ in range(301)]
    acks = [r for r in replies if r["type"] == "ack"]
    assert [a["ref"] for a in acks] == list(range(300))
    assert [a["activities"][0]["seq"] for a in acks] == list(range(1, 301))
    assert replies[-1] == {"type": "pong", "ref": "after"}
    listed = (await server.http(token).get("/v1/feeds/room:pipe/activities?limit=3")).json()["results"]
    assert [a["object"] for a in listed] == ["o:299", "o:298", "o:297"]


async def test_permessage_deflate_when_enabled(server_factory):
    """With per_message_deflate on, clients negotiate compression and everything still flows."""
    srv = await server_factory(server={"per_message_deflate": True})
    token = srv.token("a", RIGHTS)
    watcher = await srv.ws(token)
    assert [type(e).__name__ for e in watcher.protocol.extensions] == ["PerMessageDeflate"]
    await subscribe(watcher, "room:z")
    writer = await srv.ws(token)
    big = {**ACTIVITY, "text": "compressible " * 500}
    await send(writer, {"type": "publish", "ref": 1, "feed": "room:z", "activities": [ACTIVITY, big]})
    assert (await recv(writer))["type"] == "ack"
    events = [await recv(watcher), await recv(watcher)]
    assert [e["seq"] for e in events] == [1, 2] and events[1]["activity"]["text"] == big["text"]
    plain = await server_factory()  # off by default: nothing negotiated
    assert not (await plain.ws(token)).protocol.extensions


async def test_fast_path_is_engaged(server):
    """Every connection writes frames through the protocol's FrameSink (not ASGI send): fails loudly if
    a uvicorn/websockets upgrade stops offering it, instead of silently slowing fan-out down."""
    from importlib.metadata import version

    token = server.token("a", RIGHTS)
    watchers = [await server.ws(token) for _ in range(3)]
    for ws in watchers:
        await subscribe(ws, "room:fast")
    connections = list(server.app.ws.connections)
    assert len(connections) == 3
    assert all(c.direct for c in connections), (
        f"WebSocket fast path not engaged with uvicorn {version('uvicorn')} / websockets {version('websockets')}: "
        "see server/wsproto.py and the pins in pyproject.toml"
    )
    r = await server.http(token).post("/v1/feeds/room:fast/activities", json=ACTIVITY)
    assert r.status_code == 201
    for ws in watchers:
        event = await recv(ws)
        assert event["type"] == "activity" and event["activity"]["id"] == r.json()["activities"][0]["id"]
