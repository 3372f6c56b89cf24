"""The ``ours_follows`` group: follows (SPEC §12) against baselines measured in the same run.

- **writes** (``follow_writes``): ``POST`` one activity, 50 connections, interleaved repeats: to a
  feed nobody follows (the baseline), to a feed with one follower, and the same native ``POST`` on
  a second server with ``[getstream]`` on (its id index is written after every post). Ratios to
  the unfollowed ``POST`` of the plain server; all as requests/s.
- **fan-out** (``follow_fanout``): ``FOLLOWERS`` timeline feeds follow ``user:star``
  (``follow_many``, copy limit 0); one batch of ``ACTIVITIES`` is posted to it; we time until every
  follower feed holds every copy (polling Redis) and read server and Redis CPU over that window:
  copies/s, time to converge, CPU µs per copy. Baseline: plain writes of batches of the same
  ``ACTIVITIES`` (HTTP, 50 connections, 20 feeds): activities/s and CPU µs per activity.
- **enriched read** (``enriched_timeline``): ``GET`` a timeline of 50 follow copies with
  reactions, ``with_reaction_counts`` + ``with_recent_reactions`` + ``with_own_reactions``, vs a
  plain read of 50 from a flat feed (50 connections, interleaved repeats): ratio of requests/s.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import redis

from . import targets as T
from .control import BenchError, http_load
from .procs import cpu_seconds, http_request

FOLLOWERS = 10_000
ACTIVITIES = 20
STAR = "user:star"
#: The ``[getstream]`` settings of the second server.
GETSTREAM = {"api_key": "bench-follow-key", "api_secret": "bench-follow-secret-" + "f" * 16, "app_id": "7"}


def _token(secret: str) -> dict[str, str]:
    claims = {"sub": "bench-follow", "admin": True, "exp": int(time.time()) + 4 * 3600}
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


def _call(port: int, method: str, path: str, body: Any, auth: dict[str, str], want: int = 201) -> Any:
    data = b"" if body is None else json.dumps(body).encode()
    st, answer = http_request(port, method, path, data, auth, timeout=120)
    if st != want:
        raise BenchError(f"{method} {path} answered {st}: {answer[:300]!r}")
    return json.loads(answer) if answer else None


def _median(values: list[float]) -> float | None:
    vals = sorted(v for v in values if v is not None)
    return vals[len(vals) // 2] if vals else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _rotated(kinds: dict[str, Any], rep: int) -> list[tuple[str, Any]]:
    """The kinds in a different order each repeat: no kind always runs first (or after the same one)."""
    items = list(kinds.items())
    k = rep % len(items)
    return items[k:] + items[:k]


def _load(ctx: Any, target: T.OursTarget, tag: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
    spec = {
        "port": target.port,
        "conns": 50,
        "requests": requests,
        "warmup": 0.5,
        "duration": ctx.settings.http_secs,
        "cpu": {"server": target.cpu_pids(), "redis": ctx.redis.cpu_pids()},
    }
    r = http_load(ctx.logdir, tag, spec)
    ctx.say(f"    {tag:<24} {r['ok_per_s']:>9,.0f} ok/s  statuses {r['statuses']}")
    if r["first_bad"]:
        ctx.say(f"      first non-2xx: {r['first_bad'][0][:300]!r}")
    return r


def _writes(ctx: Any, plain: T.OursTarget, gs: T.OursTarget) -> dict[str, Any]:
    auth, gs_auth = _token(plain.secret), _token(gs.secret)
    _call(plain.port, "POST", "/v1/feeds/timeline:w/follows", {"target": "bench:wfollowed"}, auth)
    one = json.dumps({"verb": "post", "object": "o:1", "audience": ["everyone"]})
    kinds = {
        "unfollowed": (plain, {"method": "POST", "path": "/v1/feeds/bench:wplain/activities", "headers": auth}),
        "followed": (plain, {"method": "POST", "path": "/v1/feeds/bench:wfollowed/activities", "headers": auth}),
        "getstream_on": (gs, {"method": "POST", "path": "/v1/feeds/bench:wgs/activities", "headers": gs_auth}),
    }
    runs: dict[str, list[float]] = {k: [] for k in kinds}
    for rep in range(ctx.settings.http_repeats):
        for kind, (target, req) in _rotated(kinds, rep):
            runs[kind].append(_load(ctx, target, f"follow-post-{kind}-{rep}", [{**req, "body": one}])["ok_per_s"])
    base = _median(runs["unfollowed"])
    return {
        "unfollowed_per_s": base,
        "followed_per_s": _median(runs["followed"]),
        "getstream_on_per_s": _median(runs["getstream_on"]),
        "followed_ratio": _ratio(_median(runs["followed"]), base),
        "getstream_on_ratio": _ratio(_median(runs["getstream_on"]), base),
        "runs": {k: [round(v) for v in vs] for k, vs in runs.items()},
    }


def _fanout(ctx: Any, target: T.OursTarget, prefix: str) -> dict[str, Any]:
    auth = _token(target.secret)
    batch = {"activities": [{"verb": "post", "object": f"o:{i}", "audience": ["everyone"]} for i in range(ACTIVITIES)]}
    body = json.dumps(batch)
    # Baseline: plain writes of the same batches, to 20 feeds nobody follows (the spec is an argv).
    reqs = [
        {"method": "POST", "path": f"/v1/feeds/bench:plain{i}/activities", "headers": auth, "body": body}
        for i in range(20)
    ]
    base = _load(ctx, target, "follow-plain-writes", reqs)
    base_acts = base["ok_per_s"] * ACTIVITIES
    base_n = base["requests"] * ACTIVITIES
    feeds = [f"timeline:b{i}" for i in range(FOLLOWERS)]
    t0 = time.monotonic()
    for i in range(0, FOLLOWERS, 2500):
        pairs = [{"source": f, "target": STAR} for f in feeds[i : i + 2500]]
        _call(target.port, "POST", "/v1/follows", {"follows": pairs, "activity_copy_limit": 0}, auth)
    follow_s = time.monotonic() - t0
    r = redis.Redis.from_url(ctx.redis.url(0))
    idx = [f"{prefix}{{{f}}}:idx" for f in feeds]
    pids = {"server": target.cpu_pids(), "redis": ctx.redis.cpu_pids()}
    cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
    t0 = time.monotonic()
    _call(target.port, "POST", f"/v1/feeds/{STAR}/activities", batch, auth)
    write_ms = (time.monotonic() - t0) * 1000
    try:
        while True:
            pipe = r.pipeline(transaction=False)
            for key in idx:
                pipe.zcard(key)
            done = sum(c == ACTIVITIES for c in pipe.execute())
            if done == FOLLOWERS:
                break
            if time.monotonic() - t0 > 300:
                raise BenchError(f"only {done}/{FOLLOWERS} followers converged in 300 s")
            time.sleep(0.05)
    finally:
        r.close()
    converge = time.monotonic() - t0
    cpu = {k: cpu_seconds(v) - cpu0[k] for k, v in pids.items()}
    copies = FOLLOWERS * ACTIVITIES
    per_s = copies / converge
    base_us = {k: round(v / base_n * 1e6, 2) if base_n else None for k, v in base["cpu_secs"].items()}
    ctx.say(f"    fan-out {copies:,} copies in {converge:.2f}s: {per_s:,.0f}/s (plain writes {base_acts:,.0f}/s)")
    return {
        "followers": FOLLOWERS,
        "activities": ACTIVITIES,
        "follow_many_s": round(follow_s, 2),
        "write_ms": round(write_ms, 2),
        "converge_s": round(converge, 3),
        "copies_per_s": round(per_s),
        "server_us_per_copy": round(cpu["server"] / copies * 1e6, 2),
        "redis_us_per_copy": round(cpu["redis"] / copies * 1e6, 2),
        "baseline_activities_per_s": round(base_acts),
        "baseline_server_us_per_activity": base_us.get("server"),
        "baseline_redis_us_per_activity": base_us.get("redis"),
        "ratio": _ratio(per_s, base_acts),
    }


def _reads(ctx: Any, target: T.OursTarget) -> dict[str, Any]:
    auth = _token(target.secret)
    for feed in ("user:flat", "user:src"):
        items = [{"verb": "post", "object": f"o:{i}", "audience": ["everyone"]} for i in range(50)]
        _call(target.port, "POST", f"/v1/feeds/{feed}/activities", {"activities": items}, auth)
    follow = {"target": "user:src", "activity_copy_limit": 50}
    _call(target.port, "POST", "/v1/feeds/timeline:reader/follows", follow, auth)
    page = _call(target.port, "GET", "/v1/feeds/timeline:reader/activities?limit=50", None, auth, want=200)
    if len(page["results"]) != 50:
        raise BenchError(f"the timeline holds {len(page['results'])} copies, not 50")
    for doc in page["results"]:
        for kind in ("like", "like", "comment"):
            body = {"kind": kind, "activity_id": doc["id"], "feed": "timeline:reader"}
            _call(target.port, "POST", "/v1/reactions", body, auth)
    flags = "with_reaction_counts=true&with_recent_reactions=true&with_own_reactions=true"
    kinds = {
        "flat": "/v1/feeds/user:flat/activities?limit=50",
        "timeline": "/v1/feeds/timeline:reader/activities?limit=50",  # copies, no enrichment
        "enriched": f"/v1/feeds/timeline:reader/activities?limit=50&{flags}",
    }
    runs: dict[str, list[float]] = {k: [] for k in kinds}
    us: dict[str, list[float]] = {k: [] for k in kinds}
    for rep in range(ctx.settings.http_repeats):
        for kind, path in _rotated(kinds, rep):
            r = _load(ctx, target, f"follow-read-{kind}-{rep}", [{"method": "GET", "path": path, "headers": auth}])
            runs[kind].append(r["ok_per_s"])
            if r["requests"]:
                us[kind].append(round(r["cpu_secs"]["server"] / r["requests"] * 1e6, 1))
    flat, timeline, enriched = _median(runs["flat"]), _median(runs["timeline"]), _median(runs["enriched"])
    return {
        "flat_per_s": flat,
        "timeline_per_s": timeline,
        "enriched_per_s": enriched,
        "ratio": _ratio(enriched, flat),
        # what enrichment itself costs: the same timeline read with and without the reaction flags
        "enriched_to_timeline": _ratio(enriched, timeline),
        "timeline_to_flat": _ratio(timeline, flat),
        "flat_server_us_per_request": _median(us["flat"]),
        "timeline_server_us_per_request": _median(us["timeline"]),
        "enriched_server_us_per_request": _median(us["enriched"]),
    }


def group_follows(ctx: Any, plain: T.OursTarget, gs: T.OursTarget, prefix: str = "af:") -> dict[str, Any]:
    """Writes with follows and with ``[getstream]`` on, a 10,000-follower fan-out and an enriched
    timeline read, each against its baseline of this run (see the module docstring)."""
    return {
        "follow_writes": _writes(ctx, plain, gs),
        "follow_fanout": _fanout(ctx, plain, prefix),
        "enriched_timeline": _reads(ctx, plain),
    }
