"""Regression tests for the holes of issue 13, each against a running server and real clients."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from conftest import nothing_more, recv, recv_until, send, subscribe
from websockets.exceptions import ConnectionClosed

ACTIVITY = {"verb": "post", "object": "o:1"}


async def _closed_with(ws, timeout: float) -> int | None:
    """Read until the connection closes (within ``timeout``); its close code."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return ws.close_code


# -- item 1: re-authentication ---------------------------------------------------------------------


async def test_reauth_as_another_sub_is_refused_and_keeps_expiry(server):
    """An `auth` for another sub is refused (forbidden), changes nothing, and the first token still expires."""
    admin = server.token("boss", admin=True, ttl=3)
    ws = await server.ws(admin)
    await subscribe(ws, "vault:1")
    await send(ws, {"type": "auth", "ref": "swap", "token": server.token("mallory", ttl=3600)})
    reply = await recv(ws)
    assert reply["type"] == "error" and reply["code"] == "forbidden" and reply["ref"] == "swap", reply
    await send(ws, {"type": "publish", "ref": "p", "feed": "vault:1", "activity": ACTIVITY})
    ack = await recv_until(ws, "ack")
    assert ack["activities"][0]["actor"]["id"] == "boss"  # still the first principal, not mallory
    started = time.monotonic()
    assert await _closed_with(ws, 8) == 4001
    assert time.monotonic() - started < 6


async def test_refresh_of_the_same_sub_replaces_rights_and_ends_lost_subscriptions(server):
    """A refresh's rights replace the old ones at once; subscriptions no longer allowed end with a reason."""
    writer = server.http(server.token("w", admin=True))
    old = server.token("alice", {"room:*": ["member"], "other:*": ["read"]})
    ws = await server.ws(old)
    await subscribe(ws, "room:1")
    await subscribe(ws, "other:1")
    await send(ws, {"type": "auth", "ref": "r", "token": server.token("alice", {"room:*": ["read"]})})
    assert await recv(ws) == {"type": "unsubscribed", "feed": "other:1", "reason": "forbidden"}
    assert await recv(ws) == {"type": "welcome", "sub": "alice", "ref": "r"}
    # member → read on room:1: a members-only activity is no longer pushed; a public one is.
    r = await writer.post("/v1/feeds/room:1/activities", json={**ACTIVITY, "audience": ["members"]})
    assert r.status_code == 201
    r = await writer.post("/v1/feeds/other:1/activities", json={**ACTIVITY, "audience": ["public"]})
    assert r.status_code == 201
    r = await writer.post("/v1/feeds/room:1/activities", json={**ACTIVITY, "object": "o:2", "audience": ["public"]})
    assert r.status_code == 201
    event = await recv(ws)
    assert event["type"] == "activity" and event["feed"] == "room:1" and event["activity"]["object"] == "o:2"
    await nothing_more(ws)
    await send(ws, {"type": "subscribe", "ref": "s", "feed": "other:1"})
    assert (await recv(ws))["code"] == "forbidden"


async def test_refresh_rearms_the_expiry_to_the_new_token(server):
    """A refresh moves the 4001 close to the new token's exp: later for a longer token, never cancelled."""
    ws = await server.ws(server.token("alice", {"room:*": ["read"]}, ttl=2))
    await send(ws, {"type": "auth", "ref": "r", "token": server.token("alice", {"room:*": ["read"]}, ttl=5)})
    assert (await recv(ws))["type"] == "welcome"
    started = time.monotonic()
    await asyncio.sleep(2.5)  # past the first token's exp: still open
    await send(ws, {"type": "ping", "ref": "alive"})
    assert (await recv(ws))["type"] == "pong"
    assert await _closed_with(ws, 8) == 4001
    assert 2.0 < time.monotonic() - started < 7


# -- item 2: identifiers and the history filter's encoding -----------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {**ACTIVITY, "audience": ["identity:carol\u001fp"]},
        {**ACTIVITY, "audience": [{"type": "role", "id": "x\u0000"}]},
        {**ACTIVITY, "audience": [{"type": "identity", "id": "a\u0085b"}]},  # C1 control (NEL)
        {**ACTIVITY, "actor": "boss\u001fp"},
        {**ACTIVITY, "actor": {"id": "boss\n"}},
        {**ACTIVITY, "id": "01\u001f"},
        {**ACTIVITY, "audience": ["identity:" + "u" * 129]},
    ],
)
async def test_identifiers_with_control_characters_are_422(server, body):
    """Activity, actor and audience ids are checked whole (anchored): a control character anywhere is a 422."""
    admin = server.http(server.token("boss", admin=True))
    r = await admin.post("/v1/feeds/public:1/activities", json=body)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "carol\u001fp"},
        {"sub": "carol\n"},
        {"sub": "x" * 129},
        {"sub": "alice", "roles": ["acc\u001fp"]},
        {"sub": "alice", "roles": [""]},
        {"sub": "alice", "feeds": {"f:\u001f*": ["read"]}},
        {"sub": "alice", "feeds": {"bad feed": ["read"]}},
        {"sub": "alice", "feeds": {"f:*x": ["read"]}},
    ],
)
async def test_token_identifiers_are_checked(server, claims):
    """A JWT whose sub, roles or feed patterns hold control characters (or are malformed) is a 401."""
    import jwt
    from conftest import SECRET

    token = jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET)
    r = await server.http(token).get("/v1/feeds/public:1/activities")
    assert r.status_code == 401, r.text


def test_bad_public_feed_pattern_is_refused_at_start():
    """A configured feed pattern is checked like a token's."""
    from server.auth import Authenticator

    with pytest.raises(ValueError):
        Authenticator(jwt_secret="s" * 32, public_feeds=["public:\u001f*"])
    Authenticator(jwt_secret="s" * 32, public_feeds=["public:*", "*", "exact:feed"])


HOSTILE = ["carol\u001fp", "\u001fp", "1:p", "p", "0:", "x\u001fe", "é:1", "ü" * 3, "5:alice", "\u0000", ":", "9999:"]


async def _store_raw(server, feed: str, actor: str, audience: list[dict], *, with_line: bool = True) -> str:
    """Store an activity straight into Redis, bypassing validation (old data, or a validation bug)."""
    import orjson
    import redis.asyncio as aredis
    from ulid import ULID

    from server.models import visibility

    keys = server.app.keys.feed(feed)
    activity_id = str(ULID())
    body = {"id": activity_id, "feed": feed, "actor": {"id": actor}, "verb": "post", "object": "o"}
    body["audience"] = audience
    client = aredis.Redis.from_url(server.app.redis_url)
    try:
        await client.zadd(keys.idx, {activity_id: int(time.time() * 1000)})
        await client.hset(keys.acts, activity_id, orjson.dumps(body))
        if with_line:
            await client.hset(keys.vis, activity_id, visibility(actor, "post", audience))
    finally:
        await client.aclose()
    return activity_id


@pytest.mark.parametrize("with_line", [True, False], ids=["stored-line", "line-from-body"])
async def test_history_filter_cannot_be_forged_whatever_the_ids(server, with_line):
    """History reads admit exactly whom `acl` admits, even for ids holding separators and control characters."""
    from server.acl import Principal

    feed = "public:forge"
    expected: dict[str, set[str]] = {"anon": set(), "carol": set(), "alice": set()}
    viewers = {
        "anon": Principal(public_feeds=("public:*",)).viewer(feed),
        "carol": Principal(sub="carol", roles=frozenset({"p"}), public_feeds=("public:*",)).viewer(feed),
        "alice": Principal(sub="alice", public_feeds=("public:*",)).viewer(feed),
    }
    for hostile in HOSTILE:
        for audience in (
            [{"type": "identity", "id": hostile}],
            [{"type": "role", "id": hostile}],
            [{"type": "identity", "id": hostile}, {"type": "role", "id": "q"}],
        ):
            for actor in (hostile, "someone"):
                activity_id = await _store_raw(server, feed, actor, audience, with_line=with_line)
                doc = {"actor": {"id": actor}, "audience": audience}
                for name, viewer in viewers.items():
                    if viewer.can_see(doc):
                        expected[name].add(activity_id)
    tokens = {"anon": None, "carol": server.token("carol", roles=["p"]), "alice": server.token("alice")}
    for name, token in tokens.items():
        r = await server.http(token).get(f"/v1/feeds/{feed}/activities", params={"limit": 100})
        assert r.status_code == 200
        seen = {a["id"] for a in r.json()["results"]}
        assert seen == expected[name], name
    assert expected["carol"] and not expected["anon"]


# -- item 4: exp is required ------------------------------------------------------------------------


async def test_token_without_exp_is_refused(server):
    """A token without `exp` is a 401 on HTTP and closes a WebSocket with 4001."""
    import jwt
    from conftest import SECRET

    token = jwt.encode({"sub": "alice", "feeds": {"f:*": ["read"]}}, SECRET)
    r = await server.http(token).get("/v1/feeds/f:1/activities")
    assert r.status_code == 401 and "exp" in r.json()["detail"]
    ws = await server.ws()
    await send(ws, {"type": "auth", "token": token})
    assert (await recv(ws))["code"] == "unauthorized"
    assert await _closed_with(ws, 5) == 4001


async def test_require_exp_false_accepts_tokens_without_exp(server_factory):
    """`[auth] require_exp = false` accepts a token without `exp` (for trusted issuers)."""
    import jwt
    from conftest import SECRET

    srv = await server_factory(auth={"require_exp": False})
    token = jwt.encode({"sub": "alice", "feeds": {"f:*": ["read"]}}, SECRET)
    r = await srv.http(token).get("/v1/feeds/f:1/activities")
    assert r.status_code == 200


# -- item 6: slow bodies ------------------------------------------------------------------------------


def _slow_post(server, declared: int = 1000, sent: int = 10) -> socket.socket:
    """A raw connection that declares a body of ``declared`` bytes and sends only ``sent``."""
    sock = socket.create_connection((server.settings.server.host, server.settings.server.port), timeout=10)
    head = (
        "POST /v1/feeds/f:1/activities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.token('alice', {'f:*': ['write']})}\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"{" + b" " * (sent - 1))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (the socket's timeout bounds each read)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


async def test_slow_body_gets_408_and_the_connection_is_closed(server_factory):
    """Content-Length: 1000 with 10 bytes sent: a 408 problem after body_timeout, then the server closes."""
    srv = await server_factory(server={"body_timeout": 1.0})
    sock = _slow_post(srv)
    started = time.monotonic()
    try:
        answer = await asyncio.wait_for(asyncio.to_thread(_read_all, sock), 8)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"application/problem+json" in answer and b"request_timeout" in answer
    assert 0.8 < time.monotonic() - started < 5
    r = await srv.http(srv.token("alice", {"f:*": ["write"]})).post("/v1/feeds/f:1/activities", json=ACTIVITY)
    assert r.status_code == 201  # the server is fine


async def test_slow_bodies_are_bounded_in_number(server_factory):
    """Beyond max_body_readers requests sending their body at once, more get 503 + Retry-After."""
    srv = await server_factory(server={"body_timeout": 3.0, "max_body_readers": 2})
    slow = [_slow_post(srv) for _ in range(2)]
    try:
        await asyncio.sleep(0.3)  # both are now waiting for the rest of their bodies
        third = _slow_post(srv)
        try:
            answer = await asyncio.wait_for(asyncio.to_thread(_read_all, third), 2.5)
        finally:
            third.close()
        assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer.lower(), answer[:300]
        for sock in slow:  # and the first two still end with 408
            assert (await asyncio.wait_for(asyncio.to_thread(_read_all, sock), 8)).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in slow:
            sock.close()
    r = await srv.http(srv.token("alice", {"f:*": ["write"]})).post("/v1/feeds/f:1/activities", json=ACTIVITY)
    assert r.status_code == 201  # slots are released


# -- item 8: expected disconnects are not errors --------------------------------------------------


def _errors(caplog) -> list[str]:
    """Records at ERROR or above, and any record carrying a traceback."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_client_disconnecting_mid_body_is_not_an_error(server, caplog):
    """A client that hangs up halfway through its body leaves no error and no traceback in the log."""
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        sock = _slow_post(server)
        await asyncio.sleep(0.2)  # the handler is now waiting for the rest of the body
        sock.close()
    await asyncio.sleep(0.5)
    assert _errors(caplog) == []
    r = await server.http().get("/healthz")
    assert r.status_code == 200


@pytest.fixture
def own_valkey(tmp_path):
    """An own Valkey: the test below kills pub/sub clients, which must never hit a shared Redis."""
    from server.embedded import EmbeddedRedis

    with EmbeddedRedis(tmp_path / "valkey") as instance:
        yield instance.url


async def test_failed_broker_writer_is_retrieved_and_reconnects(server_factory, caplog, own_valkey):
    """An unexpected error in the pub/sub writer is logged once as a warning, the connection is re-made,
    and asyncio never reports "Task exception was never retrieved"."""
    import gc

    import redis.asyncio as aredis

    server = await server_factory(redis={"url": own_valkey})
    redis_url = own_valkey
    caplog.set_level(logging.INFO)
    ws = await server.ws(server.token("a", {"room:*": ["read", "write"]}))
    await subscribe(ws, "room:1")
    server.app.broker._queue("SUBSCRIBE", object())  # a command redis-py cannot encode: the writer fails
    await asyncio.sleep(0.3)
    client = aredis.Redis.from_url(redis_url)
    try:  # a reconnect drops the old connection's tasks
        await client.execute_command("CLIENT KILL TYPE pubsub")
    finally:
        await client.aclose()
    await asyncio.sleep(0.5)
    gc.collect()
    await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert _errors(caplog) == []
    assert any("broker-writer failed" in r.getMessage() for r in caplog.records)
    http = server.http(server.token("a", {"room:*": ["read", "write"]}))
    assert (await http.post("/v1/feeds/room:1/activities", json=ACTIVITY)).status_code == 201
    assert (await recv_until(ws, "activity", timeout=8))["feed"] == "room:1"
