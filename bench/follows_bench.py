"""Follow fan-out and enriched timeline reads (SPEC §12), measured against a real server process.

    .venv/bin/python bench/follows_bench.py [--followers 10000] [--activities 20] [--json PATH]

1. **Fan-out**: ``--followers`` timeline feeds follow ``user:star`` (``follow_many``, copy limit 0);
   one batch of ``--activities`` is posted to ``user:star``; we time until every follower feed
   holds every copy (polling Redis), and read the server process's CPU over that window.
   Reported: copies/s (followers x activities / time to converge), time to converge, CPU µs per
   copy, and the write's own latency (the fan-out must not hold it up).
2. **Enriched timeline read**: a timeline of 50 follow copies with reactions; ``GET`` of 50 with
   ``with_reaction_counts`` + ``with_recent_reactions`` + ``with_own_reactions`` vs a plain read of
   a flat feed of 50, sequential requests; reported as requests/s of each and their ratio.

The server runs with one worker on the embedded Valkey (or ``REDIS_URL``), fresh key prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from feedbench.procs import cpu_seconds, proc_tree  # noqa: E402

from server.auth import mint_token  # noqa: E402
from server.embedded import EmbeddedRedis, free_port  # noqa: E402

SECRET = "bench-secret-" + "x" * 24


def start_server(redis_url: str, prefix: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    env.update(
        {
            "FEED_SERVER__PORT": str(port),
            "FEED_SERVER__LOG_LEVEL": "warning",
            "FEED_SERVER__DEMO": "false",
            "FEED_REDIS__URL": redis_url,
            "FEED_REDIS__KEY_PREFIX": prefix,
            "FEED_AUTH__JWT_SECRET": SECRET,
        }
    )
    config = log.with_suffix(".toml")
    config.write_text("# from FEED_* variables\n")
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "server", "--config", str(config)], cwd=ROOT, env=env, stdout=out, stderr=out
    )


async def wait_ready(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=1) as http:
        for _ in range(400):
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("server did not become ready")


async def fanout(http: httpx.AsyncClient, r: aioredis.Redis, prefix: str, pid: int, n: int, acts: int) -> dict:
    feeds = [f"timeline:b{i}" for i in range(n)]
    started = time.perf_counter()
    for i in range(0, n, 2500):
        pairs = [{"source": f, "target": "user:star"} for f in feeds[i : i + 2500]]
        resp = await http.post("/v1/follows", json={"follows": pairs, "activity_copy_limit": 0}, timeout=120)
        resp.raise_for_status()
    follow_s = time.perf_counter() - started
    items = [{"verb": "post", "object": f"o:{i}", "audience": ["everyone"]} for i in range(acts)]
    cpu0 = cpu_seconds(proc_tree(pid))
    t0 = time.perf_counter()
    resp = await http.post("/v1/feeds/user:star/activities", json={"activities": items})
    write_ms = (time.perf_counter() - t0) * 1000
    resp.raise_for_status()
    idx = [f"{prefix}{{{f}}}:idx" for f in feeds]
    while True:
        pipe = r.pipeline(transaction=False)
        for key in idx:
            pipe.zcard(key)
        counts = await pipe.execute()
        done = sum(c == acts for c in counts)
        if done == n:
            break
        if time.perf_counter() - t0 > 600:
            raise RuntimeError(f"only {done}/{n} followers converged")
        await asyncio.sleep(0.05)
    converge = time.perf_counter() - t0
    cpu = cpu_seconds(proc_tree(pid)) - cpu0
    copies = n * acts
    return {
        "followers": n,
        "activities": acts,
        "follow_many_s": round(follow_s, 2),
        "write_ms": round(write_ms, 2),
        "converge_s": round(converge, 3),
        "copies_per_s": round(copies / converge),
        "cpu_us_per_copy": round(cpu / copies * 1e6, 1),
    }


async def reads(http: httpx.AsyncClient, rounds: int) -> dict:
    for feed in ("user:flat", "user:src"):
        items = [{"verb": "post", "object": f"o:{i}", "audience": ["everyone"]} for i in range(50)]
        (await http.post(f"/v1/feeds/{feed}/activities", json={"activities": items})).raise_for_status()
    (
        await http.post("/v1/feeds/timeline:reader/follows", json={"target": "user:src", "activity_copy_limit": 50})
    ).raise_for_status()
    page = (await http.get("/v1/feeds/timeline:reader/activities", params={"limit": 50})).json()["results"]
    for doc in page:
        for kind in ("like", "like", "comment"):
            body = {"kind": kind, "activity_id": doc["id"], "feed": "timeline:reader"}
            (await http.post("/v1/reactions", json=body)).raise_for_status()
    flags = {"with_reaction_counts": "true", "with_recent_reactions": "true", "with_own_reactions": "true"}

    async def timed(feed: str, params: dict) -> float:
        for _ in range(20):  # warm up
            (await http.get(f"/v1/feeds/{feed}/activities", params=params)).raise_for_status()
        t0 = time.perf_counter()
        for _ in range(rounds):
            resp = await http.get(f"/v1/feeds/{feed}/activities", params=params)
            assert len(resp.json()["results"]) == 50
        return rounds / (time.perf_counter() - t0)

    flat = await timed("user:flat", {"limit": 50})
    timeline = await timed("timeline:reader", {"limit": 50})
    enriched = await timed("timeline:reader", {"limit": 50, **flags})
    return {
        "flat_read_per_s": round(flat),
        "timeline_read_per_s": round(timeline),
        "enriched_timeline_read_per_s": round(enriched),
        "enriched_to_flat_ratio": round(enriched / flat, 3),
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--followers", type=int, default=10_000)
    ap.add_argument("--activities", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="followbench-"))
    embedded = None
    url = os.environ.get("REDIS_URL")
    if not url:
        embedded = EmbeddedRedis(tmp / "valkey").start()
        url = embedded.url
    prefix = f"fb{uuid.uuid4().hex[:6]}:"
    port = free_port()
    proc = start_server(url, prefix, port, tmp / "server.log")
    r = aioredis.Redis.from_url(url)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base)
        token = mint_token(SECRET, "root", admin=True)
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            result = {
                "fanout": await fanout(http, r, prefix, proc.pid, args.followers, args.activities),
                "reads": await reads(http, args.rounds),
            }
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    finally:
        proc.terminate()
        proc.wait(10)
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=5000)]
        for i in range(0, len(keys), 1000):
            await r.delete(*keys[i : i + 1000])
        await r.aclose()
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())
