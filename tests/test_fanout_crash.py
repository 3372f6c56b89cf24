"""Durable follow fan-out (SPEC §12): a SIGKILL in the middle of a 5,000-follower fan-out, and lost
jobs, still leave every follower feed converged with no copy doubled."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from faults import ServerProcess

FOLLOWERS = 5000
FANOUT = {"claim_idle_seconds": 1.0, "lease_seconds": 2.0, "sweep_seconds": 2.0, "followers_per_chunk": 100}


def _acts(prefix: str, feed: str) -> str:
    return f"{prefix}{{{feed}}}:acts"


def _idx(prefix: str, feed: str) -> str:
    return f"{prefix}{{{feed}}}:idx"


async def _copies(r: aioredis.Redis, prefix: str, feeds: list[str]) -> list[tuple[int, int]]:
    """(activities in the index, bodies) of each feed."""
    pipe = r.pipeline(transaction=False)
    for feed in feeds:
        pipe.zcard(_idx(prefix, feed))
        pipe.hlen(_acts(prefix, feed))
    replies = await pipe.execute()
    return [(replies[i], replies[i + 1]) for i in range(0, len(replies), 2)]


async def _follow_all(http: httpx.AsyncClient, feeds: list[str], target: str) -> None:
    for i in range(0, len(feeds), 2500):
        pairs = [{"source": f, "target": target} for f in feeds[i : i + 2500]]
        r = await http.post("/v1/follows", json={"follows": pairs, "activity_copy_limit": 0}, timeout=60)
        assert r.status_code == 201, r.text


async def _converged(
    r: aioredis.Redis, prefix: str, feeds: list[str], expected: dict[str, str], timeout: float
) -> None:
    """Wait until every follower feed holds exactly the expected ids and texts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await _copies(r, prefix, feeds)
        if all(c == (len(expected), len(expected)) for c in counts):
            break
        assert all(a <= len(expected) + 1 for a, _ in counts), "a follower feed holds more copies than exist"
        if time.monotonic() > deadline:
            bad = sum(c != (len(expected), len(expected)) for c in counts)
            raise AssertionError(f"{bad} follower feeds did not converge: {counts[:5]}")
        await asyncio.sleep(0.2)
    for feed in feeds[:: max(1, len(feeds) // 50)]:  # a sample: the exact contents
        bodies = await r.hgetall(_acts(prefix, feed))
        docs = {k.decode(): orjson.loads(v) for k, v in bodies.items()}
        assert {k: d.get("text") for k, d in docs.items()} == expected
        assert all(d["origin"] == "user:star" and d["via"] == "follow" for d in docs.values())


@pytest.mark.timeout(240)
async def test_fanout_survives_sigkill_mid_way(tmp_path: Path, redis_url: str, prefix: str) -> None:
    """Kill -9 the server while 5,000 follower feeds are being written; a new process finishes the
    job (XAUTOCLAIM after the lease expires) and every feed converges, none doubled."""
    r = aioredis.Redis.from_url(redis_url)
    first = ServerProcess(tmp_path, redis_url, prefix, name="first", fanout={**FANOUT, "events_per_batch": 4})
    second = ServerProcess(tmp_path, redis_url, prefix, name="second", fanout=FANOUT)
    try:
        await first.start()
        http = httpx.AsyncClient(base_url=first.base, headers={"X-Test": "1"}, timeout=10)
        token = first.token("root", admin=True)
        http.headers["Authorization"] = f"Bearer {token}"
        feeds = [f"timeline:f{i}" for i in range(FOLLOWERS)]
        await _follow_all(http, feeds, "user:star")
        items = [{"verb": "post", "object": f"o:{i}", "text": f"t{i}", "audience": ["everyone"]} for i in range(20)]
        posted = (await http.post("/v1/feeds/user:star/activities", json={"activities": items})).json()
        ids = [a["id"] for a in posted["activities"]]
        edit = await http.patch(f"/v1/feeds/user:star/activities/{ids[3]}", json={"set": {"text": "edited"}})
        assert edit.status_code == 200
        assert (await http.delete(f"/v1/feeds/user:star/activities/{ids[5]}")).status_code == 204
        await http.aclose()
        # kill once some follower feeds have copies and others not yet
        async with asyncio.timeout(60):
            while True:
                counts = await _copies(r, prefix, feeds)
                started = sum(a > 0 for a, _ in counts)
                if started > 0:
                    break
                await asyncio.sleep(0.01)
        first.kill()
        counts = await _copies(r, prefix, feeds)
        complete = sum(a == 19 for a, _ in counts)
        assert complete < FOLLOWERS, "the fan-out finished before the kill: nothing was tested"
        expected = {i: f"t{n}" for n, i in enumerate(ids) if n != 5}
        expected[ids[3]] = "edited"
        await second.start()
        await _converged(r, prefix, feeds, expected, timeout=120)
        metrics = httpx.get(f"{second.base}/metrics").text
        assert "feed_fanout_lag_jobs" in metrics
    finally:
        first.kill()
        second.stop()
        await r.aclose()


@pytest.mark.timeout(120)
async def test_lost_jobs_are_repaired_by_the_sweep(tmp_path: Path, redis_url: str, prefix: str) -> None:
    """Writes whose fan-out jobs were lost (crash after the write, trimmed stream) still reach every
    follower: the sweep finds followed feeds whose cursor is behind their seq."""
    r = aioredis.Redis.from_url(redis_url)
    writer = ServerProcess(tmp_path, redis_url, prefix, name="writer", fanout={**FANOUT, "enabled": False})
    worker = ServerProcess(tmp_path, redis_url, prefix, name="worker", fanout=FANOUT)
    try:
        await writer.start()
        http = httpx.AsyncClient(base_url=writer.base, timeout=10)
        http.headers["Authorization"] = f"Bearer {writer.token('root', admin=True)}"
        feeds = [f"timeline:g{i}" for i in range(50)]
        await _follow_all(http, feeds, "user:star")
        items = [{"verb": "post", "object": f"o:{i}", "text": f"t{i}", "audience": ["everyone"]} for i in range(5)]
        posted = (await http.post("/v1/feeds/user:star/activities", json={"activities": items})).json()
        await http.aclose()
        await asyncio.sleep(0.3)
        assert await r.delete(f"{prefix}{{fanout}}:jobs") == 1  # every job lost
        await worker.start()
        expected = {a["id"]: a["text"] for a in posted["activities"]}
        await _converged(r, prefix, feeds, expected, timeout=30)
    finally:
        writer.stop()
        worker.stop()
        await r.aclose()
