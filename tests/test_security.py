"""Regression tests for the holes of issue 13, each against a running server and real clients."""

from __future__ import annotations

import asyncio
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
