"""Fixtures: a real Redis-compatible server, a real uvicorn server per test, real clients.

Redis is the embedded Valkey (started once per session under a temp dir) unless ``REDIS_URL`` is
set; each test gets its own key prefix and deletes its keys afterwards.

``FEED_TEST_TOPOLOGY`` (or ``--topology``) runs the same tests on another topology:

- ``single`` (default): one server, as above;
- ``cluster``: a local Valkey cluster (3 masters + 3 replicas, ``server.devcluster``), or the
  cluster ``REDIS_URL`` names; servers are pointed at one node;
- ``sentinel``: a local Sentinel group (1 master, 1 replica, 3 Sentinels); servers find the
  master through the Sentinels.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.cluster
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from server.app import FeedApp, create_app
from server.auth import mint_token
from server.cli import uvicorn_options
from server.config import Settings, load_settings
from server.devcluster import LocalCluster, LocalSentinel
from server.embedded import EmbeddedRedis, free_port

SECRET = "test-secret-" + "x" * 24
TIMEOUT = 5.0


TOPOLOGIES = ("single", "cluster", "sentinel")

#: Extra ``[redis]`` settings every test server gets on this session's topology (Sentinel addresses).
REDIS_EXTRA: dict[str, Any] = {}
#: URLs of a cluster's nodes, when the session runs on a cluster (``delete_prefix`` scans each).
CLUSTER_NODES: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--topology",
        choices=TOPOLOGIES,
        default=os.environ.get("FEED_TEST_TOPOLOGY") or "single",
        help="run the tests on one Redis, a local Valkey cluster or a Sentinel group ($FEED_TEST_TOPOLOGY)",
    )


@pytest.fixture(scope="session")
def topology(request: pytest.FixtureRequest) -> str:
    """The Redis topology this session runs on."""
    return str(request.config.getoption("--topology"))


@pytest.fixture(scope="session")
def redis_url(topology: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``REDIS_URL`` if set, else an embedded Valkey (or a local cluster / Sentinel group) for the session."""
    url = os.environ.get("REDIS_URL")
    if topology == "cluster":
        if url:
            CLUSTER_NODES[:] = [url]
            yield url
            return
        with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
            CLUSTER_NODES[:] = cluster.urls
            yield cluster.url
        CLUSTER_NODES.clear()
        return
    if topology == "sentinel":
        with LocalSentinel(tmp_path_factory.mktemp("sentinel")) as group:
            REDIS_EXTRA.update(sentinels=group.sentinel_addrs, sentinel_master=group.name)
            yield group.master().url
        REDIS_EXTRA.clear()
        return
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("valkey")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"t{uuid.uuid4().hex[:10]}:"
    yield value
    delete_prefix(redis_url, value)


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's own keys; also "Redis lost this data").

    On a cluster, every master is scanned (a SCAN sees one node's keys) and keys are deleted one
    by one (a multi-key DEL must stay within one slot)."""
    if CLUSTER_NODES:
        with contextlib.closing(redis.cluster.RedisCluster.from_url(CLUSTER_NODES[0])) as cluster:
            for node in cluster.get_primaries():
                client = cluster.get_redis_connection(node)
                keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
                with client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.delete(key)
                    pipe.execute()
                client.connection_pool.disconnect()
        return
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def redis_client(redis_url: str) -> Any:
    """An asyncio client for a test's direct reads and writes: cluster-aware on a cluster."""
    import redis.asyncio as aioredis

    if CLUSTER_NODES:
        return aioredis.RedisCluster.from_url(CLUSTER_NODES[0])
    return aioredis.Redis.from_url(redis_url)


def make_settings(redis_url: str, prefix: str, **sections: dict[str, Any]) -> Settings:
    """Settings for a test server: real Redis, own prefix, known secret, free port."""
    merged: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": free_port(), "log_level": "warning"},
        "redis": {"url": redis_url, "key_prefix": prefix, **REDIS_EXTRA},
        "auth": {"jwt_secret": SECRET},
    }
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    return load_settings(None, **merged)


@dataclass
class RunningServer:
    """A uvicorn server running the app in this event loop."""

    settings: Settings
    app: FeedApp
    server: uvicorn.Server
    task: asyncio.Task[None]
    clients: list[Any] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{self.settings.server.host}:{self.settings.server.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.server.host}:{self.settings.server.port}/v1/ws"

    def token(self, sub: str, feeds: dict[str, list[str]] | None = None, **claims: Any) -> str:
        """A token signed with the test secret."""
        return mint_token(self.settings.auth.jwt_secret, sub, feeds=feeds, **claims)

    def http(self, token: str | None = None, **headers: str) -> httpx.AsyncClient:
        """An httpx client for this server (closed at teardown)."""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.AsyncClient(base_url=self.base, headers=headers, timeout=TIMEOUT)
        self.clients.append(client)
        return client

    async def ws(self, token: str | None = None, *, auth: str = "message", **kwargs: Any) -> ClientConnection:
        """A websockets client; with a token, authenticated by header or by an auth message."""
        headers = dict(kwargs.pop("additional_headers", {}) or {})
        if token and auth == "header":
            headers["Authorization"] = f"Bearer {token}"
        conn = await asyncio.wait_for(
            websockets.connect(self.ws_url, additional_headers=headers, open_timeout=TIMEOUT, **kwargs),
            TIMEOUT,
        )
        self.clients.append(conn)
        if token and auth == "message":
            await send(conn, {"type": "auth", "token": token})
            welcome = await recv(conn)
            assert welcome["type"] == "welcome", welcome
        return conn

    async def stop(self) -> None:
        for client in self.clients:
            try:
                await asyncio.wait_for(client.aclose() if isinstance(client, httpx.AsyncClient) else client.close(), 2)
            except Exception:
                pass
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 15)


async def start_server(settings: Settings) -> RunningServer:
    """Start uvicorn on the settings' port with the same options as the CLI."""
    app = create_app(settings)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
            raise RuntimeError("server exited during startup")
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("server did not start")
    return RunningServer(settings, app, server, task)


@pytest.fixture
async def server_factory(redis_url: str, prefix: str) -> AsyncIterator[Any]:
    """Start servers with extra settings: ``await server_factory(feeds={"max_batch": 5})``."""
    running: list[RunningServer] = []

    async def factory(**sections: dict[str, Any]) -> RunningServer:
        srv = await start_server(make_settings(redis_url, prefix, **sections))
        running.append(srv)
        return srv

    yield factory
    for srv in running:
        await srv.stop()


@pytest.fixture
async def server(server_factory: Any) -> RunningServer:
    """A server with default settings (and public feeds ``public:*``)."""
    return await server_factory(auth={"public_feeds": ["public:*"]})


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    """Send one JSON message."""
    import orjson

    await asyncio.wait_for(ws.send(orjson.dumps(message).decode()), TIMEOUT)


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Receive one JSON message (fails after ``timeout``)."""
    import orjson

    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: ClientConnection, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Skip messages until one of type ``kind``."""
    async with asyncio.timeout(timeout):
        while True:
            message = await recv(ws, timeout)
            if message["type"] == kind:
                return message


async def nothing_more(ws: ClientConnection, wait: float = 0.3) -> None:
    """Assert that no message arrives within ``wait`` seconds."""
    try:
        message = await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message: {message}")


async def subscribe(ws: ClientConnection, feed: str, **extra: Any) -> dict[str, Any]:
    """Subscribe and return the ``subscribed`` reply."""
    await send(ws, {"type": "subscribe", "feed": feed, **extra})
    reply = await recv(ws)
    assert reply["type"] == "subscribed", reply
    return reply


ROOT = Path(__file__).resolve().parent.parent
