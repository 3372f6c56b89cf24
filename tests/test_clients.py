"""The Python client (client_example/python/feedclient.py) against a real server and Redis."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from conftest import ROOT, RunningServer, delete_prefix, make_settings, start_server

from server.embedded import free_port

sys.path.insert(0, str(ROOT / "client_example" / "python"))

from feedclient import Event, FeedClient, FeedError, Reset, Unauthorized  # noqa: E402

FEEDS = {"room:*": ["read", "write"]}
FAST = {"min_delay": 0.05, "max_delay": 0.4, "ack_timeout": 5.0, "connect_timeout": 5.0}

Starter = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start(redis_url: str, prefix: str) -> AsyncIterator[Starter]:
    """Start servers sharing this test's Redis prefix, optionally on a given port (to restart one)."""
    running: list[RunningServer] = []

    async def starter(port: int | None = None) -> RunningServer:
        settings = make_settings(redis_url, prefix, server={"port": port or free_port()})
        srv = await start_server(settings)
        running.append(srv)
        return srv

    yield starter
    for srv in running:
        if not srv.task.done():
            await srv.stop()


async def post(srv: RunningServer, token: str, feed: str, text: str, **extra: Any) -> dict[str, Any]:
    """Write one activity over HTTP and return it."""
    r = await srv.http(token).post(
        f"/v1/feeds/{feed}/activities", json={"verb": "say", "object": "o", "text": text, **extra}
    )
    assert r.status_code == 201, r.text
    return r.json()["activities"][0]  # type: ignore[no-any-return]


async def feed_ids(srv: RunningServer, token: str, feed: str) -> list[str]:
    """Ids of every activity in ``feed``, newest first."""
    r = await srv.http(token).get(f"/v1/feeds/{feed}/activities", params={"limit": 100})
    assert r.status_code == 200, r.text
    return [a["id"] for a in r.json()["results"]]


async def take(sub: Any, n: int, timeout: float = 5.0) -> list[Event | Reset]:
    """The next ``n`` items of a subscription."""
    return [await sub.get(timeout) for _ in range(n)]


async def test_publish_is_acked_with_the_stored_activities(start: Starter) -> None:
    """publish() returns the server's ack: one activity or a batch, stored with ids and seqs."""
    srv = await start()
    token = srv.token("alice", FEEDS, name="Alice")
    async with asyncio.timeout(20):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            assert client.sub == "alice"
            [one] = await client.publish("room:1", {"verb": "say", "object": "o", "text": "hello"})
            assert one["text"] == "hello" and one["actor"]["id"] == "alice" and one["seq"] == 1
            batch = await client.publish("room:1", [{"verb": "say", "object": "o", "text": t} for t in "ab"])
            assert [a["seq"] for a in batch] == [2, 3]
            assert await feed_ids(srv, token, "room:1") == [batch[1]["id"], batch[0]["id"], one["id"]]


async def test_publish_error_is_raised_without_retrying(start: Starter) -> None:
    """A refused write raises FeedError with the server's code at once, and writes nothing."""
    srv = await start()
    token = srv.token("alice", {"room:*": ["read"]})
    async with asyncio.timeout(20):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            with pytest.raises(FeedError) as info:
                await client.publish("room:1", {"verb": "say", "object": "o"}, retries=3)
            assert info.value.code == "forbidden"
            assert client.connections == 1
            with pytest.raises(FeedError) as info:
                await client.publish("no spaces allowed", {"verb": "say", "object": "o"})
            assert info.value.code == "invalid"
        assert await feed_ids(srv, srv.token("admin", admin=True), "room:1") == []


async def test_publish_retries_when_the_connection_drops_before_the_ack(start: Starter) -> None:
    """The write lands but the connection closes before its ack: the retry overwrites, no duplicate."""
    srv = await start()
    token = srv.token("alice", FEEDS)
    service = srv.app.service
    original = service.post
    calls = 0

    async def post_then_drop(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        bodies = await original(*args, **kwargs)
        if calls == 1:  # stored, but the ack never leaves: the connection closes first
            srv.app.ws.close_all(1012, "test: dropped before the ack")
        return bodies

    service.post = post_then_drop  # type: ignore[method-assign]
    async with asyncio.timeout(20):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            [stored] = await client.publish("room:1", {"verb": "say", "object": "o", "text": "once"})
            assert calls == 2 and client.connections == 2
            assert stored["version"] == 2  # the retry overwrote the first write
        assert await feed_ids(srv, token, "room:1") == [stored["id"]]


async def test_publish_waits_for_a_restarting_server(start: Starter) -> None:
    """A publish made while the server is down is sent once it is back, exactly once."""
    port = free_port()
    srv = await start(port)
    token = srv.token("alice", FEEDS)
    async with asyncio.timeout(40):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            await srv.stop()
            pending = asyncio.create_task(
                client.publish("room:1", {"verb": "say", "object": "o", "text": "late"}, timeout=3, retries=10)
            )
            await asyncio.sleep(0.8)
            assert not pending.done() and not client.connected
            srv = await start(port)
            [stored] = await pending
            assert stored["text"] == "late" and client.connections == 2
        assert await feed_ids(srv, token, "room:1") == [stored["id"]]


async def test_subscription_resumes_across_a_server_restart_without_gap_or_duplicate(start: Starter) -> None:
    """Events written while the server was down are replayed on reconnect, once each, in order."""
    port = free_port()
    srv = await start(port)
    other = await start()  # a second process on the same Redis keeps accepting writes
    token = srv.token("alice", FEEDS)
    async with asyncio.timeout(40):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            sub = await client.subscribe("room:1")
            assert sub.cursor.seq == 0
            for i in range(3):
                await post(other, token, "room:1", f"before {i}")
            seen = await take(sub, 3)

            await srv.stop()
            for i in range(3):
                await post(other, token, "room:1", f"while down {i}")
            srv = await start(port)

            seen += await take(sub, 3, timeout=10)
            await post(other, token, "room:1", "after")
            seen += await take(sub, 1)
            assert client.connections == 2
            with pytest.raises(TimeoutError):
                await sub.get(0.5)

    assert all(isinstance(item, Event) for item in seen), seen
    assert [item.seq for item in seen] == list(range(1, 8))  # type: ignore[union-attr]
    assert [item.activity["text"] for item in seen] == [  # type: ignore[union-attr]
        *(f"before {i}" for i in range(3)),
        *(f"while down {i}" for i in range(3)),
        "after",
    ]
    assert sub.cursor.seq == 7


async def test_subscription_yields_reset_when_history_was_lost(start: Starter, redis_url: str, prefix: str) -> None:
    """If the feed's history vanished (new epoch), the iterator yields Reset, then new events."""
    port = free_port()
    srv = await start(port)
    token = srv.token("alice", FEEDS)
    async with asyncio.timeout(40):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            sub = await client.subscribe("room:1")
            await post(srv, token, "room:1", "old")
            [old] = await take(sub, 1)
            old_epoch = sub.cursor.epoch

            await srv.stop()
            delete_prefix(redis_url, prefix)
            srv = await start(port)

            marker = await sub.get(10)
            assert isinstance(marker, Reset) and marker.reason == "not-recovered"
            assert marker.epoch != old_epoch and marker.seq == 0
            await post(srv, token, "room:1", "new")
            [new] = await take(sub, 1)
            assert isinstance(new, Event) and new.seq == 1 and new.activity["text"] == "new"
    assert isinstance(old, Event) and old.seq == 1


async def test_updates_arrive_as_updated_events(start: Starter) -> None:
    """Writing the same (foreign_id, time) again yields an ``updated`` event with the new body."""
    srv = await start()
    token = srv.token("alice", FEEDS)
    when = "2026-01-14T09:30:00.000Z"
    async with asyncio.timeout(20):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            async with await client.subscribe("room:1") as sub:
                first = {"verb": "say", "object": "o", "foreign_id": "c:1", "time": when, "text": "v1"}
                [a] = await client.publish("room:1", first)
                [b] = await client.publish("room:1", {**first, "text": "v2"})
                created, updated = await take(sub, 2)
            assert isinstance(created, Event) and created.event == "created"
            assert isinstance(updated, Event) and updated.event == "updated"
            assert updated.activity["id"] == a["id"] == b["id"] and updated.activity["text"] == "v2"


async def test_patch_and_delete_arrive_as_events(start: Starter) -> None:
    """patch() and delete() are acked, and subscribers see ``updated`` then ``deleted``."""
    srv = await start()
    token = srv.token("alice", FEEDS)
    async with asyncio.timeout(20):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            async with await client.subscribe("room:1") as sub:
                [a] = await client.publish("room:1", {"verb": "say", "object": "o", "text": "v1"})
                patched = await client.patch("room:1", a["id"], set={"text": "v2"}, version=1)
                assert patched["text"] == "v2" and patched["version"] == 2
                assert await client.delete("room:1", a["id"]) == 1
                events = await take(sub, 3)
    assert [(e.event, e.seq) for e in events] == [("created", 1), ("updated", 2), ("deleted", 3)]  # type: ignore[union-attr]
    assert events[2].activity["id"] == a["id"]  # type: ignore[union-attr]


async def test_history_reads_over_http(start: Starter) -> None:
    """history() reads the newest page with the client's credentials."""
    srv = await start()
    token = srv.token("alice", FEEDS)
    for i in range(3):
        await post(srv, token, "room:1", f"m{i}")
    async with asyncio.timeout(20):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            page = await client.history("room:1", limit=2)
            assert [a["text"] for a in page["results"]] == ["m2", "m1"] and page["next"]
            with pytest.raises(FeedError) as info:
                await client.history("secret:1")
            assert info.value.code == "http_403"


async def test_a_rejected_token_is_final(start: Starter) -> None:
    """An invalid token raises Unauthorized from connect() instead of reconnecting forever."""
    srv = await start()
    async with asyncio.timeout(20):
        client = FeedClient(srv.ws_url, token="not-a-jwt", **FAST)
        with pytest.raises(Unauthorized):
            await client.connect()
        await client.close()


async def test_an_expired_token_ends_subscriptions(start: Starter) -> None:
    """When the server closes with 4001 (token expired) the client stops and iteration raises."""
    srv = await start()
    token = srv.token("alice", FEEDS, ttl=1)
    async with asyncio.timeout(20):
        async with FeedClient(srv.ws_url, token=token, **FAST) as client:
            sub = await client.subscribe("room:1")
            with pytest.raises(Unauthorized):
                await sub.get(15)
            assert not client.connected and client.connections == 1
            with pytest.raises(Unauthorized):
                await client.publish("room:1", {"verb": "say", "object": "o"})


async def test_anonymous_client_reads_public_feeds_only(start: Starter) -> None:
    """Without a token the client is anonymous: subscribing to a non-public feed is refused."""
    srv = await start()
    async with asyncio.timeout(20):
        async with FeedClient(srv.ws_url, **FAST) as client:
            assert client.sub is None
            with pytest.raises(FeedError) as info:
                await client.subscribe("room:1")
            assert info.value.code in {"forbidden", "unauthorized"}
            assert "room:1" not in client.subscriptions
