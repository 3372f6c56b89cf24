"""Fault tests (issue: no lost events): real server processes against an own Redis that is killed,
paused, restarted and flushed; clients that resume, never read, or are frozen; SIGTERM; kill -9.

Every subscriber must see every change it may see, in seq order, once — or a ``reset``.
Each test prints what the clients observed (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from faults import (
    RedisInstance,
    ServerProcess,
    Subscriber,
    TcpProxy,
    check_stream,
    metric,
    percentile,
    post_until_acked,
    ws_connect,
    ws_recv,
    ws_send,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

RIGHTS = {"room:*": ["read", "write", "member"]}
PREFIX = "fault:"


def batch(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"verb": "post", "object": "o:1", "sent_at": time.time(), **extra} for _ in range(n)]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisInstance]:
    """An own Valkey (never the shared REDIS_URL): these tests kill, pause and flush it."""
    instance = RedisInstance(tmp_path / "valkey").start()
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Any]:
    """Start server processes: ``await launch(redis_url, workers=1, server={...})``."""
    started: list[ServerProcess] = []

    async def factory(redis_url: str, **kwargs: Any) -> ServerProcess:
        proc = ServerProcess(tmp_path, redis_url, PREFIX, name=f"server{len(started)}", **kwargs)
        started.append(proc)
        return await proc.start()

    yield factory
    for proc in started:
        proc.stop()


@pytest.fixture
async def http_for() -> AsyncIterator[Any]:
    """httpx clients for a server, authenticated with a token; closed at teardown."""
    made: list[httpx.AsyncClient] = []

    def factory(srv: ServerProcess, token: str, timeout: float = 10) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=srv.base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()


@pytest.fixture
async def ws_for() -> AsyncIterator[Any]:
    """WebSocket clients (authenticated by header); closed at teardown."""
    made: list[Any] = []

    async def factory(url: str, token: str, **kwargs: Any) -> Any:
        ws = await ws_connect(url, token, **kwargs)
        made.append(ws)
        return ws

    yield factory
    for ws in made:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2)


@contextlib.asynccontextmanager
async def subscribers(urls: list[str], token: str, feed: str, n: int) -> AsyncIterator[list[Subscriber]]:
    subs = [Subscriber([urls[i % len(urls)], *urls], token, feed) for i in range(n)]
    await asyncio.gather(*(s.start() for s in subs))
    try:
        yield subs
    finally:
        await asyncio.gather(*(s.close() for s in subs))


async def wait_all(subs: list[Subscriber], seq: int, timeout: float) -> None:
    await asyncio.gather(*(s.wait_for_seq(seq, timeout) for s in subs))


async def test_pubsub_connections_killed_during_a_burst(own_redis, launch, http_for):
    """CLIENT KILL TYPE pubsub three times mid-burst: every subscriber still gets all N, in order, once."""
    a = await launch(own_redis.url)
    b = await launch(own_redis.url)
    token = a.token("w", RIGHTS)
    async with subscribers([a.ws_url, b.ws_url], token, "room:burst", 20) as subs:
        http_a = http_for(a, token, 5)
        http_b = http_for(b, token, 5)
        kills = 0
        acked: list[int] = []

        async def killer() -> None:
            nonlocal kills
            client = own_redis.client()
            for _ in range(3):
                await asyncio.sleep(0.25)
                kills += client.execute_command("CLIENT KILL TYPE pubsub")
            client.close()

        async def writer() -> None:
            deadline = time.monotonic() + 20
            for i in range(40):
                seqs, _ = await post_until_acked((http_a, http_b)[i % 2], "room:burst", batch(50), deadline=deadline)
                acked.extend(seqs)

        await asyncio.gather(killer(), writer())
        await wait_all(subs, max(acked), 15)
        for sub in subs:
            check_stream(sub, range(1, max(acked) + 1))
            assert not sub.resets and sub.closes == []
        gaps = sum([await metric(h, "feed_gap_events_filled_total") for h in (http_a, http_b)])
        print(f"\nkilled {kills} pub/sub connections; {len(acked)} events; 20 subscribers complete; {gaps:.0f} filled")
        assert kills >= 4  # both processes lost their connection at least twice


async def test_redis_killed_and_restarted_mid_stream(own_redis, launch, http_for):
    """kill -9 Redis mid-stream, restart it: writes get 503 meanwhile, no acked write is lost,
    subscribers get every event in order with no reset (the epoch survives), readiness recovers."""
    a = await launch(own_redis.url)
    b = await launch(own_redis.url)
    token = a.token("w", RIGHTS)
    async with subscribers([a.ws_url, b.ws_url], token, "room:restart", 20) as subs:
        http = [http_for(s, token, 5) for s in (a, b)]
        acked: list[int] = []
        acked_at: list[float] = []
        refused = 0
        stop = asyncio.Event()
        ready_seen: list[int] = []

        async def writer() -> None:
            nonlocal refused
            i = 0
            while not stop.is_set():
                seqs, n = await post_until_acked(http[i % 2], "room:restart", batch(5), deadline=time.monotonic() + 15)
                acked.extend(seqs)
                acked_at.append(time.monotonic())
                refused += n
                i += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.5)
        own_redis.kill()
        down_at = time.monotonic()
        await asyncio.sleep(0.3)
        ready_seen.append((await http[0].get("/readyz")).status_code)
        started = time.monotonic()
        down = await http[1].post("/v1/feeds/room:restart/activities", json=batch(1)[0])
        down_s = time.monotonic() - started
        assert down.status_code == 503 and down.headers["retry-after"] == "1"
        await asyncio.sleep(0.7)
        own_redis.restart()
        restarted_at = time.monotonic()
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(task, 15)
        back_after = min(t for t in acked_at if t > restarted_at) - restarted_at
        ready_seen.append((await http[0].get("/readyz")).status_code)
        last = max(acked)
        await wait_all(subs, last, 15)
        stored = own_redis.client().hlen(f"{PREFIX}{{room:restart}}:acts")
        for sub in subs:
            check_stream(sub, range(1, last + 1))
            assert not sub.resets, sub.resets
        print(
            f"\n{len(acked)} acked writes, {refused} refused with 503 while Redis was down "
            f"(a write to the dead Redis: 503 in {down_s * 1000:.0f} ms); "
            f"{stored} stored after restart; readyz {ready_seen}; "
            f"Redis down {restarted_at - down_at:.1f}s, writes accepted again {back_after:.2f}s after its restart; "
            f"20 subscribers got seq 1..{last} in order, no reset"
        )
        assert stored >= len(acked)  # every acknowledged write survived kill -9 (appendonly, everysec)
        assert refused > 0 and ready_seen == [503, 200]


async def test_redis_paused(own_redis, launch, http_for, ws_for):
    """SIGSTOP Redis: writes fail within the command timeout with 503 + Retry-After (WS: an error
    reply), /readyz is 503, WebSockets stay open; after SIGCONT everything recovers by itself."""
    srv = await launch(own_redis.url, redis={"command_timeout": 1.5})
    token = srv.token("w", RIGHTS)
    http = http_for(srv, token, 10)
    async with subscribers([srv.ws_url], token, "room:pause", 10) as subs:
        ws = await ws_for(srv.ws_url, token)
        before, _ = await post_until_acked(http, "room:pause", batch(10), deadline=time.monotonic() + 5)
        await wait_all(subs, max(before), 5)

        own_redis.pause()
        paused_at = time.monotonic()
        started = time.monotonic()
        response = await http.post("/v1/feeds/room:pause/activities", json=batch(1)[0])
        write_s = time.monotonic() - started
        assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
        assert response.headers["content-type"] == "application/problem+json"
        started = time.monotonic()
        await ws_send(ws, {"type": "publish", "ref": "w1", "feed": "room:pause", "activity": batch(1)[0]})
        error = await ws_recv(ws)
        ws_s = time.monotonic() - started
        assert error["type"] == "error" and error["code"] == "unavailable" and error["ref"] == "w1", error
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        await ws_send(ws, {"type": "subscribe", "ref": "s1", "feed": "room:other"})
        sub_error = await ws_recv(ws)
        assert sub_error["type"] == "error" and sub_error["code"] == "unavailable", sub_error
        await asyncio.sleep(max(0.0, 4.0 - (time.monotonic() - paused_at)))  # past the broker's 3 s health check
        await ws_send(ws, {"type": "ping", "ref": "p"})
        assert (await ws_recv(ws))["type"] == "pong"  # the socket stayed open throughout
        own_redis.resume()
        resumed_at = time.monotonic()

        after, refused = await post_until_acked(http, "room:pause", batch(10), deadline=time.monotonic() + 10)
        write_back = time.monotonic() - resumed_at
        while (await http.get("/readyz")).status_code != 200:
            assert time.monotonic() - resumed_at < 10, "not ready 10 s after Redis came back"
            await asyncio.sleep(0.05)
        ready_back = time.monotonic() - resumed_at
        await wait_all(subs, max(after), 10)
        for sub in subs:
            check_stream(sub, range(1, max(after) + 1))
            assert sub.closes == [] and not sub.resets
        await ws_send(ws, {"type": "ping", "ref": "p2"})
        assert (await ws_recv(ws))["type"] == "pong"
        print(
            f"\npaused 4 s: HTTP write 503 after {write_s:.2f}s, WS publish error after {ws_s:.2f}s, readyz 503; "
            f"after SIGCONT writes ok in {write_back:.2f}s ({refused} refused), readyz 200 in {ready_back:.2f}s; "
            f"10 subscribers seq 1..{max(after)}, no close, no reset"
        )
        assert write_s <= 2.0 and ws_s <= 2.0
        await ws.close()


async def test_redis_flushed_or_restarted_empty_means_reset(own_redis, launch, http_for, ws_for):
    """History lost (FLUSHALL; a restart without data): a new epoch, and every subscriber gets a
    ``reset`` — on the next write, or on the broker's resync when nothing is written."""
    srv = await launch(own_redis.url)
    token = srv.token("w", RIGHTS)
    http = http_for(srv, token, 10)
    async with subscribers([srv.ws_url], token, "room:flush", 5) as subs:
        first, _ = await post_until_acked(http, "room:flush", batch(10), deadline=time.monotonic() + 5)
        await wait_all(subs, 10, 5)
        old_epoch = subs[0].subscribed[0]["epoch"]

        own_redis.client().flushall()
        again, _ = await post_until_acked(http, "room:flush", batch(3), deadline=time.monotonic() + 5)
        assert again == [1, 2, 3]
        deadline = time.monotonic() + 5
        while any(not s.resets for s in subs):
            assert time.monotonic() < deadline, "no reset after FLUSHALL"
            await asyncio.sleep(0.02)
        more, _ = await post_until_acked(http, "room:flush", batch(2), deadline=time.monotonic() + 5)
        assert more == [4, 5]
        await wait_all(subs, 5, 5)
        for sub in subs:
            # the reset says "reload" (a history read has seq 1..3); the stream goes on after it
            assert len(sub.resets) == 1 and sub.resets[0]["epoch"] != old_epoch
            assert [e["seq"] for e in sub.events] == [*range(1, 11), 4, 5]
        new_epoch = subs[0].resets[0]["epoch"]

        ws = await ws_for(srv.ws_url, token)  # a client resuming from the lost history
        await ws_send(ws, {"type": "subscribe", "feed": "room:flush", "since": {"epoch": old_epoch, "seq": 10}})
        reply = await ws_recv(ws)
        assert reply == {**reply, "type": "subscribed", "recovered": False, "epoch": new_epoch, "seq": 5}
        await ws.close()

        # Redis comes back empty (no persistence): nothing is written, yet the resync notices.
        own_redis.kill()
        for path in own_redis.data_dir.glob("appendonly*"):
            if path.is_dir():
                for f in path.iterdir():
                    f.unlink()
                path.rmdir()
            else:
                path.unlink()
        own_redis.restart()
        deadline = time.monotonic() + 10
        while any(len(s.resets) < 2 for s in subs):
            assert time.monotonic() < deadline, [len(s.resets) for s in subs]
            await asyncio.sleep(0.05)
        third = subs[0].resets[1]["epoch"]
        assert third not in (old_epoch, new_epoch)
        resets = await metric(http, "feed_resets_total")
        print(
            f"\nFLUSHALL → 5/5 subscribers reset, then live from seq 4 of the new epoch; resume from the old "
            f"epoch → recovered:false; empty restart → 5/5 reset by the resync; feed_resets_total {resets:.0f}"
        )
        assert resets == 10


async def test_kill_9_one_server_clients_resume_on_the_other(own_redis, launch, http_for):
    """Two processes on one Redis; kill -9 the one 50 subscribers are on while writes continue:
    they reconnect to the other with ``since`` and resume with zero gaps and zero duplicates."""
    a = await launch(own_redis.url)
    b = await launch(own_redis.url)
    token = a.token("w", RIGHTS)
    http = http_for(b, token, 10)
    subs = [Subscriber([a.ws_url, b.ws_url], token, "room:failover") for _ in range(50)]
    try:
        await asyncio.gather(*(s.start() for s in subs))
        acked: list[int] = []
        stop = asyncio.Event()

        async def writer() -> None:
            while not stop.is_set():
                seqs, _ = await post_until_acked(http, "room:failover", batch(5), deadline=time.monotonic() + 10)
                acked.extend(seqs)
                await asyncio.sleep(0.005)

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.7)
        a.kill()
        killed_at = time.monotonic()
        while not all(len(s.subscribed) == 2 for s in subs):
            assert time.monotonic() - killed_at < 10, "clients did not resubscribe"
            await asyncio.sleep(0.02)
        resumed_in = time.monotonic() - killed_at
        await asyncio.sleep(0.7)
        stop.set()
        await asyncio.wait_for(task, 10)
        last = max(acked)
        await wait_all(subs, last, 15)
        replayed = 0
        for sub in subs:
            assert sub.seqs == list(range(1, last + 1))  # zero gaps, zero duplicates
            assert not sub.resets and sub.subscribed[1]["recovered"] is True
            assert sub.closes == [1006]
            replayed += sub.replayed()
        print(
            f"\nkill -9 of server A: 50/50 clients resumed on B within {resumed_in:.2f}s (recovered:true), "
            f"{replayed} events replayed from the change log in all; each got seq 1..{last} exactly once, "
            f"in order; {len(acked)} writes acked"
        )
    finally:
        await asyncio.gather(*(s.close() for s in subs))


def _tiny_socket(port: int) -> socket.socket:
    """A client socket with a small receive buffer, so a client that never reads backs up fast."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_one_client_never_reads_beside_fifty_that_do(own_redis, launch, http_for, ws_for):
    """A subscriber that never reads is closed with 4008 once its bounded queue overflows; the 50
    that read get everything, in order, and their latency is no worse than without it."""
    srv = await launch(own_redis.url, server={"queue_size": 50, "close_timeout": 1.0})
    token = srv.token("w", RIGHTS)
    http = http_for(srv, token, 10)
    text = "x" * 8000

    async def phase(posts: int, until_4008: bool = False) -> list[int]:
        seqs: list[int] = []
        i = 0
        while i < posts or (until_4008 and await metric(http, "feed_slow_consumer_closes_total") < 1):
            got, _ = await post_until_acked(http, "room:slow", batch(5, text=text), deadline=time.monotonic() + 5)
            seqs.extend(got)
            i += 1
            await asyncio.sleep(0.02)
            assert i < 400, "the slow consumer was never closed"
        return seqs

    async with subscribers([srv.ws_url], token, "room:slow", 50) as subs:
        baseline = await phase(40)
        await wait_all(subs, max(baseline), 10)

        slow = await ws_for(srv.ws_url, token, sock=_tiny_socket(srv.port), max_queue=1)
        await ws_send(slow, {"type": "subscribe", "feed": "room:slow"})
        assert (await ws_recv(slow))["type"] == "subscribed"
        loaded = await phase(40, until_4008=True)
        await wait_all(subs, max(loaded), 15)
        for sub in subs:
            check_stream(sub, range(1, max(loaded) + 1))
            assert sub.closes == []
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await slow.recv()
        assert slow.close_code == 4008
        deadline = time.monotonic() + 5
        while await metric(http, "feed_ws_connections") != 50:
            assert time.monotonic() < deadline, "the slow connection was not dropped"
            await asyncio.sleep(0.05)
        assert await metric(http, "feed_subscriptions") == 50  # and the hub forgot it

        def stats(seqs: list[int]) -> tuple[float, float]:
            wanted = set(seqs)
            values = [lat for sub in subs for seq, lat in sub.latencies if seq in wanted]
            return percentile(values, 0.5), percentile(values, 0.95)

        base50, base95 = stats(baseline)
        load50, load95 = stats(loaded)
        print(
            f"\n50 readers: baseline p50 {base50 * 1000:.1f} ms p95 {base95 * 1000:.1f} ms ({len(baseline)} events); "
            f"with a never-reading client p50 {load50 * 1000:.1f} ms p95 {load95 * 1000:.1f} ms "
            f"({len(loaded)} events, {len(loaded) * 8 // 1000} MB before 4008); slow client closed 4008, 50/50 complete"
        )
        assert load95 <= max(2 * base95, base95 + 0.05)


CLIENT_SCRIPT = """
import asyncio, sys, orjson, websockets
async def main():
    ws = await websockets.connect(sys.argv[1], additional_headers={"Authorization": "Bearer " + sys.argv[2]})
    await ws.send(orjson.dumps({"type": "subscribe", "feed": sys.argv[3]}).decode())
    await ws.recv()
    print("ready", flush=True)
    async for _ in ws:
        pass
asyncio.run(main())
"""


@pytest.mark.parametrize("traffic", ["idle", "flowing", "backlog"])
async def test_sigstopped_client_is_dropped(own_redis, launch, traffic, http_for):
    """A client frozen with SIGSTOP stops answering pings: the server drops it after ping_timeout
    and the hub forgets its subscription — idle, while events keep flowing to it, and with a
    backlog (4 MB sent after it froze, then silence) that its TCP window can't take."""
    srv = await launch(own_redis.url, server={"ping_interval": 0.5, "ping_timeout": 1.0, "close_timeout": 1.0})
    token = srv.token("w", RIGHTS)
    http = http_for(srv, token, 10)
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, srv.ws_url, token, "room:frozen"], stdout=subprocess.PIPE
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(client.stdout.readline), 10)  # type: ignore[union-attr]
        assert line.strip() == b"ready"
        async with subscribers([srv.ws_url], token, "room:frozen", 1) as (reader,):
            assert await metric(http, "feed_subscriptions") == 2
            client.send_signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            sent = 0

            async def write(n: int) -> None:
                nonlocal sent
                seqs, _ = await post_until_acked(
                    http, "room:frozen", batch(n, text="x" * 8000), deadline=time.monotonic() + 5
                )
                sent = max(seqs)

            if traffic == "backlog":
                for _ in range(10):
                    await write(50)
            while await metric(http, "feed_ws_connections") != 1:
                assert time.monotonic() - stopped_at < 10, "the frozen client was never dropped"
                if traffic == "flowing":
                    await write(5)
                await asyncio.sleep(0.05)
            dropped_in = time.monotonic() - stopped_at
            assert await metric(http, "feed_subscriptions") == 1
            assert await metric(http, "feed_slow_consumer_closes_total") == 0  # the ping did it, not the queue
            if sent:
                await reader.wait_for_seq(sent, 5)
                check_stream(reader, range(1, sent + 1))
            print(
                f"\nSIGSTOPped client ({traffic}): dropped and unsubscribed {dropped_in:.2f}s after SIGSTOP "
                f"(ping 0.5 s, timeout 1 s); {sent} events ({sent * 8} KB) to it meanwhile"
            )
            assert dropped_in < 5
    finally:
        client.kill()
        client.wait(5)
        client.stdout.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_drains_then_closes_1012_and_exits(own_redis, launch, workers, http_for):
    """SIGTERM: /readyz turns 503 first while everything else keeps working for drain_delay, then
    every WebSocket is closed with 1012 and the process exits within drain_delay + shutdown_timeout."""
    srv = await launch(own_redis.url, workers=workers, server={"drain_delay": 1.0, "shutdown_timeout": 3.0})
    token = srv.token("w", RIGHTS)
    http = http_for(srv, token, 5)
    async with subscribers([srv.ws_url], token, "room:term", 20) as subs:
        for sub in subs:
            sub.resume = False  # record the close instead of reconnecting
        srv.signal(signal.SIGTERM)
        term_at = time.monotonic()
        while (await http.get("/readyz")).status_code != 503:
            assert time.monotonic() - term_at < 1.0, "readyz still 200 during the drain"
            await asyncio.sleep(0.02)
        not_ready_in = time.monotonic() - term_at
        seqs, _ = await post_until_acked(http, "room:term", batch(3), deadline=time.monotonic() + 2)
        await wait_all(subs, max(seqs), 2)  # still served while draining
        assert (await http.get("/healthz")).status_code == 200
        assert all(sub.closes == [] for sub in subs)
        while not all(sub.closes for sub in subs):
            assert time.monotonic() - term_at < 5, "sockets not closed"
            await asyncio.sleep(0.02)
        closed_in = time.monotonic() - term_at
        assert all(sub.closes == [1012] for sub in subs), [s.closes for s in subs]
        code = await srv.wait(1.0 + 3.0 + 2.0)
        exited_in = time.monotonic() - term_at
    print(
        f"\nSIGTERM ({workers} worker(s)): readyz 503 after {not_ready_in:.2f}s, writes and pushes still served "
        f"while draining, 20/20 sockets closed 1012 after {closed_in:.2f}s, exit {code} after {exited_in:.2f}s"
    )
    assert closed_in >= 1.0 and exited_in < 1.0 + 3.0 + 1.0


async def test_sigint_during_the_drain_ends_it(own_redis, launch, http_for):
    """A second SIGTERM does not cut the drain short; Ctrl-C (SIGINT) does."""
    srv = await launch(own_redis.url, server={"drain_delay": 30.0, "shutdown_timeout": 2.0})
    http = http_for(srv, srv.token("w", RIGHTS), 5)
    srv.signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    srv.signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    assert (await http.get("/readyz")).status_code == 503
    assert (await http.get("/healthz")).status_code == 200  # still draining, still serving
    srv.signal(signal.SIGINT)
    started = time.monotonic()
    await srv.wait(3.0)
    print(f"\nSIGTERM, SIGTERM (ignored), SIGINT: exit {time.monotonic() - started:.2f}s after the SIGINT")


async def test_sigterm_exits_in_time_despite_a_frozen_client(own_redis, launch, http_for):
    """A client frozen with a full TCP window can't take the 1012 close: the process still exits
    within drain_delay + shutdown_timeout."""
    srv = await launch(own_redis.url, server={"drain_delay": 0.5, "shutdown_timeout": 2.0, "ping_interval": 0})
    token = srv.token("w", RIGHTS)
    http = http_for(srv, token, 10)
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, srv.ws_url, token, "room:stuck"], stdout=subprocess.PIPE
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(client.stdout.readline), 10)  # type: ignore[union-attr]
        assert line.strip() == b"ready"
        client.send_signal(signal.SIGSTOP)
        for _ in range(10):  # 4 MB it will never read
            await post_until_acked(http, "room:stuck", batch(50, text="x" * 8000), deadline=time.monotonic() + 5)
        srv.signal(signal.SIGTERM)
        term_at = time.monotonic()
        code = await srv.wait(0.5 + 2.0 + 3.0)
        exited_in = time.monotonic() - term_at
        print(
            f"\nSIGTERM with a frozen client holding a 4 MB backlog: exit {code} after {exited_in:.2f}s "
            "(drain 0.5 s + shutdown_timeout 2 s)"
        )
        assert exited_in < 0.5 + 2.0 + 1.5
    finally:
        client.kill()
        client.wait(5)
        client.stdout.close()  # type: ignore[union-attr]


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _sockets(pid: int) -> int:
    """How many sockets a process holds (listener and Redis connections included)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += Path(fd).readlink().name.startswith("socket:")
    return count


async def test_workers_and_hosts_behave_as_one_server(own_redis, launch):
    """``--workers 2`` plus a separate process (another host) on one Redis: a subscriber anywhere
    receives, in seq order, the writes accepted by any process."""
    multi = await launch(own_redis.url, workers=2)
    other = await launch(own_redis.url)
    token = multi.token("w", RIGHTS)
    workers = _children(multi.pid)
    workers = [p for p in workers if _sockets(p) > 0]
    before = {p: _sockets(p) for p in workers}
    async with subscribers([multi.ws_url, multi.ws_url, other.ws_url], token, "room:cluster", 30) as subs:
        # Which worker accepts a connection is the kernel's choice: add subscribers (bounded)
        # until both workers hold some, so the test really spans both.
        extra = []
        for _ in range(40):
            if all(_sockets(p) > before[p] for p in workers):
                break
            extra.append(await Subscriber([multi.ws_url], token, "room:cluster").start())
        after = {p: _sockets(p) for p in workers}
        subs = [*subs, *extra]
        acked: list[int] = []

        async def writer(base: str, n: int) -> None:
            for _ in range(n):  # a fresh connection each time, so the kernel spreads them over the workers
                async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
                    seqs, _ = await post_until_acked(http, "room:cluster", batch(5), deadline=time.monotonic() + 5)
                    acked.extend(seqs)

        await asyncio.gather(writer(multi.base, 30), writer(other.base, 30))
        last = max(acked)
        assert sorted(acked) == list(range(1, last + 1))
        await wait_all(subs, last, 10)
        for sub in subs:
            assert sub.seqs == list(range(1, last + 1))
        await asyncio.gather(*(s.close() for s in extra))
    spread = {p: after[p] - before[p] for p in workers}
    print(
        f"\n2 workers (+{spread} sockets per worker pid) + 1 other process: 30 subscribers each got seq "
        f"1..{last} in order from writes accepted by all processes"
    )
    assert len(workers) == 2 and all(n > 0 for n in spread.values()), spread


async def test_network_to_redis_stalled_then_cut(own_redis, launch, http_for):
    """Through a TCP proxy: a 4 s black hole (half-open connections) and then a cut of every
    connection: writes fail fast with 503 meanwhile, subscribers stay connected, and afterwards
    every subscriber has every event in order with no reset."""
    proxy = await TcpProxy(own_redis.port).start()
    try:
        srv = await launch(proxy.url)
        token = srv.token("w", RIGHTS)
        http = http_for(srv, token, 10)
        async with subscribers([srv.ws_url], token, "room:net", 10) as subs:
            first, _ = await post_until_acked(http, "room:net", batch(10), deadline=time.monotonic() + 5)
            proxy.stall()
            started = time.monotonic()
            stalled = await http.post("/v1/feeds/room:net/activities", json=batch(1)[0])
            stalled_s = time.monotonic() - started
            assert stalled.status_code == 503
            assert (await http.get("/readyz")).status_code == 503
            await asyncio.sleep(4.0 - (time.monotonic() - started))
            proxy.unstall()
            second, refused = await post_until_acked(http, "room:net", batch(10), deadline=time.monotonic() + 10)
            await wait_all(subs, max(second), 10)
            proxy.cut()
            third, refused_cut = await post_until_acked(http, "room:net", batch(10), deadline=time.monotonic() + 10)
            last = max(third)
            await wait_all(subs, last, 10)
            for sub in subs:
                check_stream(sub, range(1, last + 1))
                assert sub.closes == [] and not sub.resets
            gaps = await metric(http, "feed_gap_events_filled_total")
            print(
                f"\nproxy black hole 4 s: write 503 after {stalled_s:.2f}s, readyz 503; after it {refused} refused; "
                f"cut: {refused_cut} refused; 10 subscribers got seq 1..{last}, no close, no reset; "
                f"{gaps:.0f} filled"
            )
    finally:
        await proxy.close()
