"""Opt-in rate limits: HTTP per credential (429 + Retry-After), WebSocket per connection (close 4029)."""

from __future__ import annotations

import pytest
from conftest import recv, send
from websockets.exceptions import ConnectionClosed


async def test_http_rate_limit_per_credential(server_factory):
    """Over the limit a credential gets 429 problems with Retry-After; others and health checks are not affected."""
    srv = await server_factory(server={"http_rate_limit": "5/minute"})
    alice = srv.http(srv.token("alice", {"f:*": ["read"]}))
    for _ in range(5):
        assert (await alice.get("/v1/feeds/f:1/activities")).status_code == 200
    r = await alice.get("/v1/feeds/f:1/activities")
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 60 and r.json()["status"] == 429
    bob = srv.http(srv.token("bob", {"f:*": ["read"]}))
    assert (await bob.get("/v1/feeds/f:1/activities")).status_code == 200
    assert (await alice.get("/healthz")).status_code == 200
    velt = srv.http(**{"x-velt-auth-token": "not-a-token"})  # Velt's routes answer in Velt's error shape
    statuses = [(await velt.post("/v2/activities/get", json={"data": {}})).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    r = await velt.post("/v2/activities/get", json={"data": {}})
    assert r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


async def test_ws_rate_limit_closes_4029(server_factory):
    """A connection sending more messages than ws_rate_limit gets an error and close code 4029."""
    srv = await server_factory(server={"ws_rate_limit": "5/minute"})
    ws = await srv.ws(srv.token("a", {"f:*": ["read"]}))  # the auth message counts as one
    for i in range(4):
        await send(ws, {"type": "ping", "ref": i})
        assert (await recv(ws))["type"] == "pong"
    await send(ws, {"type": "ping", "ref": "over"})
    error = await recv(ws)
    assert error["code"] == "rate_limited" and error["ref"] == "over"
    with pytest.raises(ConnectionClosed):
        await recv(ws)
    assert ws.close_code == 4029


async def test_no_limit_by_default(server):
    """Without settings nothing is rate limited."""
    http = server.http(server.token("alice", {"f:*": ["read"]}))
    for _ in range(30):
        assert (await http.get("/v1/feeds/f:1/activities")).status_code == 200
