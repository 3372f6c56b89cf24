"""The measurements.

Scenarios are grouped by the server instance they need, so each group starts a *fresh* target
(and a fresh load generator), runs its steps and stops everything in ``finally``. A group that
fails records ``{"error": …}`` and the run goes on with the next one.

Conventions used everywhere:

- **deliveries/s** = messages arriving at subscribers per second (publishes/s x matching
  subscribers). Offered rates are in deliveries/s; the load generator turns them into publishes/s.
- A **step** is one open-loop run at a fixed offered rate. It *keeps up* when nothing is lost
  (every expected delivery arrived within the drain window), no connection was closed, p99 stays
  under a cap and latency does not grow during the step (see :func:`step`).
- **Sustainable rate** = the highest offered rate whose step keeps up, found with a ladder
  (up from a start rate until the first failure, or down if the start rate already fails; in full
  mode refined by bisection). Repeated ``repeats`` times; the median is reported.
- **Cost** = CPU seconds of the server's process tree during the step (``/proc/<pid>/stat``
  utime+stime) divided by the number of deliveries (or requests), in µs.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import targets as T
from .control import BenchError, LoadgenClient, http_load
from .dialects import make_token
from .procs import cpu_seconds, http_request, rss_kib

# Fan-out ladders, in deliveries/s. The first rung is where the search starts.
LADDER_UP = [
    10_000,
    20_000,
    30_000,
    40_000,
    50_000,
    60_000,
    70_000,
    80_000,
    90_000,
    100_000,
    120_000,
    150_000,
    200_000,
    250_000,
]
LADDER_DOWN = [5_000, 2_500, 1_000, 500, 250]

GOAL_RATE_1K = 100_000  # fan-out N=1000: p99 goal is judged at this offered rate
GOAL_RATE_10K = 50_000  # fan-out N=10,000 with 2 workers
E2E_RATE = 50_000  # write→delivery, N=100
# A step during which processes other than the server, Redis and the load generator kept more
# than this many cores busy is marked noisy (and a failure of it is retried).
NOISY_CORES = 0.3


@dataclass
class Settings:
    """Knobs that differ between ``--quick`` and a full run."""

    quick: bool
    step_secs: float
    repeats: int
    http_secs: float
    http_repeats: int
    big_n: int
    personal_rate: int
    growth_rate: int
    budget_secs: float
    bisect: int
    max_tries: int  # attempts per ladder rung before it counts as failed
    # A step "keeps up" only if its p99 stays under this cap (besides no loss and no queue growth).
    cap_p99_ms_1k: float = 500.0
    cap_p99_ms_10k: float = 2000.0
    # The latency goals, reported per step as "meets_goal" and as the strict sustainable rate.
    goal_p99_ms_1k: float = 20.0
    goal_p99_ms_10k: float = 100.0

    @classmethod
    def make(cls, quick: bool, cap_p99_ms: float | None = None) -> Settings:
        if quick:
            st = cls(
                quick=True,
                step_secs=2.0,
                repeats=1,
                http_secs=1.0,
                http_repeats=2,
                big_n=10_000,
                personal_rate=2_000,
                growth_rate=20_000,
                budget_secs=255,
                bisect=0,
                max_tries=2,
            )
        else:
            st = cls(
                quick=False,
                step_secs=5.0,
                repeats=3,
                http_secs=4.0,
                http_repeats=5,
                big_n=10_000,
                personal_rate=5_000,
                growth_rate=20_000,
                budget_secs=3600,
                bisect=2,
                max_tries=3,
            )
        if cap_p99_ms:
            st.cap_p99_ms_1k = cap_p99_ms
        return st


@dataclass
class Ctx:
    settings: Settings
    logdir: Path
    redis: T.RedisServer
    secret: str
    started: float = field(default_factory=time.monotonic)
    ours_ok: bool = False
    ours_note: str = ""
    log: list[str] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.settings.budget_secs - self.elapsed()

    def say(self, msg: str) -> None:
        line = f"[{self.elapsed():6.1f}s] {msg}"
        print(line, flush=True)
        self.log.append(line)


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _us(cpu_s: float, n: int) -> float | None:
    return round(cpu_s / n * 1e6, 2) if n else None


# -- fan-out steps and ladders ----------------------------------------------------------------------


def step(
    ctx: Ctx,
    lg: LoadgenClient,
    target: T.Target,
    *,
    deliveries_per_s: float,
    n_match: int,
    feed: str,
    cap_ms: float,
    goal_ms: float | None = None,
    duration: float | None = None,
    audience: list[Any] | None = None,
    drain: float = 2.0,
    feeds: dict[str, Any] | None = None,
    extra_cpu: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """One open-loop step; returns a compact record with its verdicts.

    ``pass`` (the step keeps up): nothing lost within ``drain`` s after the last publish, no
    connection closed, p99 ≤ ``cap_ms``, and latency did not grow during the step (median latency
    of the last third of the timetable ≤ first third + max(10 ms, 50 %)) -- growth means a queue
    is building, i.e. the offered rate is above what the server can sustain.
    ``meets_goal``: nothing lost and p99 ≤ ``goal_ms``.
    """
    duration = duration or ctx.settings.step_secs
    cpu = {"server": target.cpu_pids(), "redis": ctx.redis.cpu_pids(), **(extra_cpu or {})}
    kw: dict[str, Any] = feeds or {"feeds": [feed]}
    r = lg.fanout(
        rate=deliveries_per_s / n_match,
        duration=duration,
        expected_per_pub=n_match,
        drain=drain,
        audience=audience or ["members"],
        cpu=cpu,
        **kw,
    )
    received = r["received"]
    m1, m3 = r["p50_first_third_ms"], r["p50_last_third_ms"]
    growing = m1 is not None and m3 is not None and (m3 - m1) > max(10.0, 0.5 * m1)
    rec = {
        "offered_per_s": deliveries_per_s,
        "achieved_per_s": round(r["achieved_deliveries_per_s"]),
        "received": received,
        "wall_secs": r["wall_secs"],
        "loss": r["loss"],
        "extra": r["extra"],
        "p50_ms": _r(r["p50_ms"]),
        "p99_ms": _r(r["p99_ms"]),
        "max_ms": _r(r["max_ms"]),
        "p50_first_third_ms": _r(m1),
        "p50_last_third_ms": _r(m3),
        "server_us_per_delivery": _us(r["cpu_secs"]["server"], received),
        "redis_us_per_delivery": _us(r["cpu_secs"]["redis"], received),
        "server_cpu_util": round(r["cpu_secs"]["server"] / max(1e-9, r["wall_secs"]), 3),
        "loadgen_cpu_util": r["loadgen_cpu_util"],
        "host_busy_cores": r["host_busy_cores"],
        # CPU that neither the server, Redis nor the load generator used: other tenants of the host
        "other_busy_cores": round(
            max(0.0, r["host_busy_cores"] - r["loadgen_cpu_util"] - sum(r["cpu_secs"].values()) / r["wall_secs"]), 3
        ),
        "send_lag_p99_ms": _r(r["send_lag_p99_ms"]),
        "closed": r["closed"],
        "publisher_replies": r["replies"],
    }
    for k, v in r["cpu_secs"].items():
        if k not in ("server", "redis"):
            rec[f"{k}_us_per_delivery"] = _us(v, received)
    if r["errors"]:
        rec["publisher_errors"] = r["errors"][:2]
    lossless = r["loss"] == 0 and not r["closed"] and r["p99_ms"] is not None
    rec["pass"] = bool(lossless and r["p99_ms"] <= cap_ms and not growing)
    rec["latency_growing"] = growing
    if goal_ms is not None:
        rec["meets_goal"] = bool(lossless and r["p99_ms"] <= goal_ms)
    # An overloaded load generator inflates latency by itself: flag it rather than blame the server.
    rec["loadgen_bound"] = r["loadgen_cpu_util"] > 0.9
    rec["noisy"] = rec["other_busy_cores"] > NOISY_CORES
    if not rec["pass"] or growing:
        # Let the server work off its backlog before the next step is charged with it.
        rec["settle_secs"] = lg.settle()
    why = (
        ""
        if rec["pass"]
        else (" (loss)" if r["loss"] else " (closed)" if r["closed"] else " (queue grows)" if growing else " (p99 cap)")
    )
    ctx.say(
        f"    {target.name:>16} N={n_match:<5} offered {deliveries_per_s:>9,.0f}/s  got {rec['achieved_per_s']:>9,}/s"
        f"  loss {r['loss']:<6} p50 {_fmt(rec['p50_ms'])} p99 {_fmt(rec['p99_ms'])} ms"
        f"  srv {_fmt(rec['server_us_per_delivery'])} µs/dlv  cores: srv {rec['server_cpu_util']:.2f}"
        f" lg {r['loadgen_cpu_util']:.2f} other {rec['other_busy_cores']:.2f}"
        f"  {'ok' if rec['pass'] else 'FAIL' + why}{'  [noisy host]' if rec['noisy'] else ''}"
    )
    return rec


def _r(v: float | None) -> float | None:
    return round(v, 3) if v is not None else None


def _fmt(v: float | None) -> str:
    return f"{v:7.2f}" if v is not None else "    n/a"


def _search(ctx: Ctx, one: Callable[[float], dict[str, Any]], steps: list[dict[str, Any]]) -> float:
    """One ladder search; appends every step to ``steps``; returns the highest rate that kept up."""

    def run(rate: float) -> bool:
        rec = one(rate)
        steps.append(rec)
        tries = 1
        # On a shared 2-core host one scheduler hiccup, or another tenant's burst, fails a step.
        # Confirm a failure before calling the rate unsustainable when nothing was lost (it was
        # only too slow) or other processes were busy during the attempt.
        while (
            not rec["pass"]
            and ctx.remaining() > 20
            and tries < ctx.settings.max_tries
            and (rec["loss"] == 0 or rec["noisy"])
        ):
            time.sleep(0.5)
            rec = one(rate)
            rec["retry"] = True
            steps.append(rec)
            tries += 1
        return bool(rec["pass"])

    best: float = 0.0
    worst_fail: float | None = None
    if run(LADDER_UP[0]):
        best = LADDER_UP[0]
        for rate in LADDER_UP[1:]:
            if ctx.remaining() < 20:
                break
            if not run(rate):
                worst_fail = rate
                break
            best = rate
    else:
        worst_fail = LADDER_UP[0]
        for rate in LADDER_DOWN:
            if run(rate):
                best = rate
                break
            worst_fail = rate
    # Full mode: narrow the gap between the last rung kept up with and the first one that failed.
    lo, hi = best, worst_fail
    for _ in range(ctx.settings.bisect):
        if hi is None or lo == 0 or hi / lo < 1.15 or ctx.remaining() < 30:
            break
        mid = round((lo + hi) / 2, -2)
        if run(mid):
            lo = mid
        else:
            hi = mid
    return lo


def ladder(
    ctx: Ctx,
    lg: LoadgenClient,
    target: T.Target,
    *,
    n: int,
    feed: str,
    cap_ms: float,
    goal_ms: float,
    goal_rate: float | None = None,
) -> dict[str, Any]:
    """Sustainable deliveries/s (median over repeats), plus the p99 at ``goal_rate``.

    Also reports ``sustainable_at_goal_p99_per_s`` -- the highest rung that kept p99 within the
    issue's latency goal (the strict reading of "sustainable") -- and the CPU cost per delivery
    at each rate that was kept up with (``us_per_delivery_by_rate``), the steadier comparison.
    """

    def one(rate: float, duration: float | None = None) -> dict[str, Any]:
        return step(
            ctx,
            lg,
            target,
            deliveries_per_s=rate,
            n_match=n,
            feed=feed,
            cap_ms=cap_ms,
            goal_ms=goal_ms,
            duration=duration,
        )

    one(LADDER_DOWN[0], duration=1.0)  # warm-up (pools, caches, lazy imports): not recorded
    sustained: list[float] = []
    goal_recs: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    for _ in range(ctx.settings.repeats):
        first = len(steps)
        sustained.append(_search(ctx, one, steps))
        if goal_rate is not None:
            at_goal = [r for r in steps[first:] if r["offered_per_s"] == goal_rate]
            if not at_goal and ctx.remaining() > 20:
                # The ladder stopped below the goal rate: still measure latency *at* the goal.
                at_goal = [one(goal_rate)]
                steps.append(at_goal[0])
            goal_recs.extend(at_goal[-1:])
    by_rate: dict[int, list[float]] = {}
    for r in steps:
        if r["pass"] and r["server_us_per_delivery"] is not None:
            by_rate.setdefault(int(r["offered_per_s"]), []).append(r["server_us_per_delivery"])
    out: dict[str, Any] = {
        "sustainable_per_s": median(sustained),
        "sustainable_at_goal_p99_per_s": max(
            (r["offered_per_s"] for r in steps if r.get("meets_goal") and r["pass"]), default=0
        ),
        "runs": sustained,
        "us_per_delivery_by_rate": {str(k): median(v) for k, v in sorted(by_rate.items())},
        "cap_p99_ms": cap_ms,
        "goal_p99_ms": goal_ms,
        "loadgen_bound": any(r["loadgen_bound"] for r in steps),
        "steps": steps,
    }
    if goal_rate is not None:
        out["goal_rate_per_s"] = goal_rate
        out["p99_ms_at_goal_rate"] = median([r["p99_ms"] for r in goal_recs])
        out["loss_at_goal_rate"] = max((r["loss"] for r in goal_recs), default=None)
    return out


# -- groups --------------------------------------------------------------------------------------------


def _fresh(ctx: Ctx) -> None:
    ctx.redis.flush()


def group_ws(ctx: Ctx, target: T.Target, *, with_http: bool) -> dict[str, Any]:
    """fan-out N=1000 ladder, write→delivery at N=100, WS ingest (+ the HTTP scenarios for ours)."""
    s = ctx.settings
    out: dict[str, Any] = {}
    lg = LoadgenClient(ctx.logdir, f"{target.name}-ws")
    try:
        lg.connect_subs(target.dialect, target.port, 1000, "bench:room")
        lg.connect_pub(target.dialect, target.pub_port)
        out["fanout_1k"] = ladder(
            ctx,
            lg,
            target,
            n=1000,
            feed="bench:room",
            cap_ms=s.cap_p99_ms_1k,
            goal_ms=s.goal_p99_ms_1k,
            goal_rate=GOAL_RATE_1K,
        )
        lg.connect_subs(target.dialect, target.port, 100, "bench:e2e", start=1000)
        recs = [
            step(
                ctx,
                lg,
                target,
                deliveries_per_s=E2E_RATE,
                n_match=100,
                feed="bench:e2e",
                cap_ms=s.cap_p99_ms_1k,
                goal_ms=3.0,
                duration=s.step_secs,
            )
            for _ in range(s.repeats)
        ]
        out["e2e_latency_100"] = {
            "p50_ms": median([r["p50_ms"] for r in recs if r["loss"] == 0]),
            "p99_ms": median([r["p99_ms"] for r in recs if r["loss"] == 0]),
            "max_ms": median([r["max_ms"] for r in recs]),
            "loss": max(r["loss"] for r in recs),
            "rate_per_s": E2E_RATE,
            "steps": recs,
        }
        ack_dialect = {**target.dialect, "ack": True}
        lg.connect_pub(ack_dialect, target.pub_port)
        runs = []
        for _ in range(s.repeats):
            r = lg.ingest(
                duration=s.step_secs,
                window=100,
                feed="bench:ingest",
                cpu={"server": target.cpu_pids(), "redis": ctx.redis.cpu_pids()},
            )
            ctx.say(f"    {target.name:>16} ws ingest: {r['acks_per_s']:,.0f} acks/s  replies {r['replies']}")
            runs.append(r)
        out["ws_ingest"] = {
            "activities_per_s": median([r["acks_per_s"] for r in runs]),
            "server_us_per_activity": median([_us(r["cpu_secs"]["server"], r["acks"]) for r in runs]),
            "errors": runs[-1]["errors"][:2],
            "runs": [round(r["acks_per_s"]) for r in runs],
        }
    finally:
        lg.close()
    if with_http:
        out.update(group_http(ctx, target))
    return out


def group_http(ctx: Ctx, target: T.OursTarget) -> dict[str, Any]:
    """hello (GET /healthz), POST one, POST batches of 100, GET a page of 50: interleaved repeats."""
    s = ctx.settings
    token = make_token(target.secret, "bench-http", {"bench:*": ["read", "write", "member"]})
    auth = {"Authorization": f"Bearer {token}"}
    one = {"verb": "post", "object": "o:1", "audience": ["members"], "bench_t": 0}
    batch = {"activities": [{**one, "object": f"o:{i}"} for i in range(100)]}
    # History needs a feed with at least one full page: prefill it.
    st, body = http_request(target.port, "POST", "/v1/feeds/bench:hist/activities", json.dumps(batch).encode(), auth)
    if st != 201:
        raise BenchError(f"prefill POST (batch of 100) answered {st}: {body[:300]!r}")
    kinds = {
        "hello": {"method": "GET", "path": "/healthz"},
        "post": {"method": "POST", "path": "/v1/feeds/bench:http/activities", "headers": auth, "body": json.dumps(one)},
        "history": {"method": "GET", "path": "/v1/feeds/bench:hist/activities?limit=50", "headers": auth},
        "batch": {
            "method": "POST",
            "path": "/v1/feeds/bench:batch/activities",
            "headers": auth,
            "body": json.dumps(batch),
        },
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for rep in range(s.http_repeats):
        for kind, req in kinds.items():
            spec = {
                "port": target.port,
                "conns": 50,
                "requests": [req],
                "warmup": 0.5,
                "duration": s.http_secs,
                "cpu": {"server": target.cpu_pids(), "redis": ctx.redis.cpu_pids()},
            }
            r = http_load(ctx.logdir, f"{kind}-{rep}", spec)
            ctx.say(
                f"    {'ours':>16} HTTP {kind:<8} {r['ok_per_s']:>9,.0f} ok/s  statuses {r['statuses']}"
                f"  p99 {_fmt(r['p99_ms'])} ms  client cpu {r['client_cpu_util']:.2f}"
            )
            if r["first_bad"] and not runs[kind]:
                ctx.say(f"      first non-2xx: {r['first_bad'][0][:300]!r}")
            runs[kind].append(r)

    def med(kind: str) -> float | None:
        return median([r["ok_per_s"] for r in runs[kind]])

    def info(kind: str) -> dict[str, Any]:
        rs = runs[kind]
        return {
            "server_us_per_request": median([_us(r["cpu_secs"]["server"], r["requests"]) for r in rs]),
            "p99_ms": median([r["p99_ms"] for r in rs]),
            "statuses": rs[-1]["statuses"],
            "client_cpu_util": median([r["client_cpu_util"] for r in rs]),
            "runs": [round(r["ok_per_s"]) for r in rs],
            **({"first_bad": rs[-1]["first_bad"][:1]} if rs[-1]["first_bad"] else {}),
        }

    hello = med("hello")
    return {
        "http_hello": {"per_s": hello, **info("hello")},
        "http_post": {"ours_per_s": med("post"), "baseline_per_s": hello, **info("post")},
        "history_page": {"ours_per_s": med("history"), "baseline_per_s": hello, **info("history")},
        "http_batch": {
            "activities_per_s": (med("batch") or 0) * 100,
            "requests_per_s": med("batch"),
            "baseline_per_s": hello,
            **info("batch"),
        },
    }


def group_getstream(ctx: Ctx, target: T.OursTarget) -> dict[str, Any]:
    """GetStream compatibility (SPEC §11): add-activity and feed-read through ``/api/v1.0/`` as the
    official clients send them, each as a ratio to the native endpoint measured in the same run
    (interleaved repeats, same server, same feeds' sizes). Goal: >= 0.8x."""
    import jwt  # PyJWT, as make_token

    s = ctx.settings
    native_auth = {
        "Authorization": "Bearer " + make_token(target.secret, "bench-gs", {"bench:*": ["read", "write", "member"]})
    }
    gs_token = jwt.encode({"resource": "*", "action": "*", "feed_id": "*"}, GETSTREAM_SECRET, algorithm="HS256")
    gs_auth = {"Authorization": gs_token, "stream-auth-type": "jwt", "Content-Type": "application/json"}
    key = f"api_key={GETSTREAM_KEY}"
    native_one = {"verb": "post", "object": "o:1", "audience": ["everyone"]}
    gs_one = {"actor": "bench-gs", "verb": "post", "object": "o:1"}
    for path, body, headers in (
        (
            "/v1/feeds/bench:nhist/activities",
            {"activities": [{**native_one, "object": f"o:{i}"} for i in range(100)]},
            native_auth,
        ),
        (
            f"/api/v1.0/feed/bench/ghist/?{key}",
            {"activities": [{**gs_one, "object": f"o:{i}"} for i in range(100)]},
            gs_auth,
        ),
    ):
        st, answer = http_request(target.port, "POST", path, json.dumps(body).encode(), headers)
        if st != 201:
            raise BenchError(f"prefill {path} answered {st}: {answer[:300]!r}")
    kinds = {
        "native_add": {
            "method": "POST",
            "path": "/v1/feeds/bench:nadd/activities",
            "headers": native_auth,
            "body": json.dumps(native_one),
        },
        "gs_add": {
            "method": "POST",
            "path": f"/api/v1.0/feed/bench/gadd/?{key}",
            "headers": gs_auth,
            "body": json.dumps(gs_one),
        },
        "native_read": {"method": "GET", "path": "/v1/feeds/bench:nhist/activities?limit=25", "headers": native_auth},
        "gs_read": {"method": "GET", "path": f"/api/v1.0/feed/bench/ghist/?limit=25&{key}", "headers": gs_auth},
    }
    runs: dict[str, list[float]] = {k: [] for k in kinds}
    for rep in range(s.http_repeats):
        for kind, req in kinds.items():
            spec = {
                "port": target.port,
                "conns": 50,
                "requests": [req],
                "warmup": 0.5,
                "duration": s.http_secs,
                "cpu": {"server": target.cpu_pids(), "redis": ctx.redis.cpu_pids()},
            }
            r = http_load(ctx.logdir, f"gs-{kind}-{rep}", spec)
            ctx.say(f"    {kind:>12} {r['ok_per_s']:>9,.0f} ok/s  statuses {r['statuses']}  p99 {_fmt(r['p99_ms'])} ms")
            if r["first_bad"]:
                ctx.say(f"      first non-2xx: {r['first_bad'][0][:300]!r}")
            runs[kind].append(r["ok_per_s"])

    def ratio(gs: str, native: str) -> float | None:
        a, b = median(list(runs[gs])), median(list(runs[native]))
        return round(a / b, 3) if a and b else None

    return {
        "add_activity": {
            "getstream_per_s": median(list(runs["gs_add"])),
            "native_per_s": median(list(runs["native_add"])),
            "ratio": ratio("gs_add", "native_add"),
            "goal": 0.8,
        },
        "read_feed": {
            "getstream_per_s": median(list(runs["gs_read"])),
            "native_per_s": median(list(runs["native_read"])),
            "ratio": ratio("gs_read", "native_read"),
            "goal": 0.8,
        },
    }


#: The GetStream app of the ``getstream`` group's server (``[getstream]`` overrides in ``__main__``).
GETSTREAM_KEY = "bench-key"
GETSTREAM_SECRET = "bench-getstream-secret-" + "b" * 16


def group_personal(ctx: Ctx, target: T.Target, ingest: T.Target | None) -> dict[str, Any]:
    """10k feeds with one subscriber each (+ idle memory per connection, measured on the way)."""
    s = ctx.settings
    n = s.big_n
    lg = LoadgenClient(ctx.logdir, f"{target.name}-personal")
    out: dict[str, Any] = {}
    try:
        # Establish a few connections first so one-time allocations are not charged per connection.
        lg.connect_subs(target.dialect, target.port, 100, "bench:p{i}")
        time.sleep(1.0)
        rss0 = rss_kib(target.cpu_pids())
        lg.connect_subs(target.dialect, target.port, n - 100, "bench:p{i}", start=100)
        time.sleep(1.0)  # let buffers settle
        # Idle cost of n connections (keep-alive pings, timers): measured so that the per-message
        # figure below is not inflated by it at a low message rate.
        pids = target.cpu_pids()
        c0, t0 = cpu_seconds(pids), time.monotonic()
        time.sleep(1.5)
        idle_cpu_per_s = (cpu_seconds(pids) - c0) / (time.monotonic() - t0)
        rss1 = rss_kib(target.cpu_pids())
        out["memory_idle"] = {
            "kib_per_connection": round((rss1 - rss0) / (n - 100), 2),
            "connections": n,
            "rss_kib_before": rss0,
            "rss_kib_after": rss1,
        }
        ctx.say(
            f"    {target.name:>16} memory: {rss0:,} KiB → {rss1:,} KiB for {n - 100} idle subscribers"
            f" = {out['memory_idle']['kib_per_connection']} KiB/conn"
        )
        pub_target = ingest or target
        lg.connect_pub(pub_target.dialect, pub_target.pub_port)
        extra = {"ingest": ingest.cpu_pids()} if ingest is not None else None
        recs = [
            step(
                ctx,
                lg,
                target,
                deliveries_per_s=s.personal_rate,
                n_match=1,
                feed="",
                cap_ms=s.cap_p99_ms_1k,
                duration=s.step_secs,
                feeds={"feed_fmt": "bench:p{i}", "feed_count": n},
                extra_cpu=extra,
            )
            for _ in range(s.repeats)
        ]

        def net(r: dict[str, Any]) -> float | None:
            """µs/message with the idle cost of the n connections over the step subtracted."""
            gross = r["server_us_per_delivery"]
            if gross is None or not r["received"]:
                return None
            idle_us = idle_cpu_per_s * r["wall_secs"] * 1e6 / r["received"]
            return round(max(0.0, gross - idle_us), 2)

        out["personal_feeds"] = {
            "us_per_message": median([net(r) for r in recs]),
            "us_per_message_gross": median([r["server_us_per_delivery"] for r in recs]),
            "idle_cpu_util": round(idle_cpu_per_s, 4),
            "ingest_us_per_message": median([r.get("ingest_us_per_delivery") for r in recs]),
            "feeds": n,
            "rate_per_s": s.personal_rate,
            "loss": max(r["loss"] for r in recs),
            "p99_ms": median([r["p99_ms"] for r in recs]),
            "steps": recs,
        }
    finally:
        lg.close()
    return out


def group_growth(ctx: Ctx, target: T.Target, *, big_goal_step: bool) -> dict[str, Any]:
    """Cost per delivery as one feed's audience grows 100 → 1,000 → 10,000 (same deliveries/s)."""
    s = ctx.settings
    lg = LoadgenClient(ctx.logdir, f"{target.name}-growth")
    out: dict[str, Any] = {"rate_per_s": s.growth_rate, "us_per_delivery": {}, "p99_ms": {}, "steps": []}
    try:
        lg.connect_pub(target.dialect, target.pub_port)
        have = 0
        for n in (100, 1_000, s.big_n):
            lg.connect_subs(target.dialect, target.port, n - have, "bench:growth", start=have)
            have = n
            cap = s.cap_p99_ms_1k if n <= 1000 else s.cap_p99_ms_10k
            recs = [
                step(
                    ctx,
                    lg,
                    target,
                    deliveries_per_s=s.growth_rate,
                    n_match=n,
                    feed="bench:growth",
                    cap_ms=cap,
                    duration=s.step_secs,
                )
                for _ in range(s.repeats)
            ]
            out["us_per_delivery"][str(n)] = median([r["server_us_per_delivery"] for r in recs])
            out["p99_ms"][str(n)] = median([r["p99_ms"] for r in recs])
            out["steps"].extend(recs)
        if big_goal_step:
            # Same 10k audience at the N=10k goal rate: the single-process reference point.
            recs = [
                step(
                    ctx,
                    lg,
                    target,
                    deliveries_per_s=GOAL_RATE_10K,
                    n_match=s.big_n,
                    feed="bench:growth",
                    cap_ms=s.cap_p99_ms_10k,
                    goal_ms=s.goal_p99_ms_10k,
                    duration=max(4.0, s.step_secs),
                    drain=3.0,
                )
                for _ in range(s.repeats)
            ]
            out["fanout_10k_one_process"] = _goal_summary(recs)
    finally:
        lg.close()
    return out


def _goal_summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "p50_ms": median([r["p50_ms"] for r in recs]),
        "p99_ms": median([r["p99_ms"] for r in recs]),
        "max_ms": median([r["max_ms"] for r in recs]),
        "loss": max(r["loss"] for r in recs),
        "achieved_per_s": median([r["achieved_per_s"] for r in recs]),
        "server_us_per_delivery": median([r["server_us_per_delivery"] for r in recs]),
        "steps": recs,
    }


def group_fanout_10k(ctx: Ctx, target: T.Target) -> dict[str, Any]:
    """N=10,000 on one feed at 50k deliveries/s (ours with --workers 2)."""
    s = ctx.settings
    lg = LoadgenClient(ctx.logdir, f"{target.name}-10k")
    try:
        lg.connect_subs(target.dialect, target.port, s.big_n, "bench:room10k")
        lg.connect_pub(target.dialect, target.pub_port)
        step(
            ctx,
            lg,
            target,
            deliveries_per_s=10_000,
            n_match=s.big_n,
            feed="bench:room10k",
            cap_ms=s.cap_p99_ms_10k,
            duration=1.0,
        )  # warm-up
        recs = [
            step(
                ctx,
                lg,
                target,
                deliveries_per_s=GOAL_RATE_10K,
                n_match=s.big_n,
                feed="bench:room10k",
                cap_ms=s.cap_p99_ms_10k,
                goal_ms=s.goal_p99_ms_10k,
                duration=max(4.0, s.step_secs),
                drain=3.0,
            )
            for _ in range(s.repeats)
        ]
        return _goal_summary(recs) | {"rate_per_s": GOAL_RATE_10K, "workers": getattr(target, "workers", 1)}
    finally:
        lg.close()


def group_memory_deflate(ctx: Ctx, plain: T.OursTarget, deflate: T.OursTarget) -> dict[str, Any]:
    """RSS per idle authenticated subscribed connection, permessage-deflate off and on.

    Uses the ``websockets`` client (it offers permessage-deflate; the raw load generator does not
    speak it), with few enough connections for that client: ``n`` per server.
    """
    import asyncio

    import websockets

    n = 1000 if ctx.settings.quick else 2000

    async def measure(target: T.OursTarget) -> float:
        token = make_token(target.secret, "bench-mem", {"bench:*": ["read", "member"]})
        url = f"ws://127.0.0.1:{target.port}/v1/ws"

        async def one(i: int) -> Any:
            ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
            await ws.send(json.dumps({"type": "subscribe", "feed": f"bench:mem{i}"}))
            await ws.recv()
            return ws

        warm = [await one(i) for i in range(50)]  # one-time allocations are not per connection
        await asyncio.sleep(0.5)
        before = rss_kib(target.cpu_pids())
        conns = []
        for start in range(0, n, 100):
            conns += await asyncio.gather(*(one(i) for i in range(start, min(start + 100, n))))
        await asyncio.sleep(1.0)
        after = rss_kib(target.cpu_pids())
        deflated = sum(1 for c in conns if c.protocol.extensions)
        for ws in warm + conns:
            await ws.close()
        if target is deflate and deflated != n:
            raise BenchError(f"permessage-deflate negotiated on {deflated} of {n} connections")
        return round((after - before) / n, 2)

    out = {"kib_per_connection_off": asyncio.run(measure(plain)), "connections": n}
    out["kib_per_connection"] = asyncio.run(measure(deflate))
    ctx.say(
        f"    idle memory per connection: {out['kib_per_connection_off']} KiB deflate off, "
        f"{out['kib_per_connection']} KiB deflate on ({n} connections each)"
    )
    return out


def group_audience(ctx: Ctx, target: T.OursTarget) -> dict[str, Any]:
    """Audience filtering: 1000 subscribers of which 10 hold the role the event is addressed to,
    versus the same 10 alone. CPU per *event* should not grow with the 990 who may not see it."""
    s = ctx.settings
    rate_events = 200  # events/s; deliveries/s = 10x that in both variants
    audience = [{"type": "role", "id": "bench-vip"}]
    read_only = {"bench:*": ["read"]}  # not "member": the default audience would not admit them either
    lg = LoadgenClient(ctx.logdir, "ours-audience")
    try:
        lg.connect_subs(
            {**target.dialect, "rights": read_only, "role_every": 100, "role": "bench-vip"},
            target.port,
            1000,
            "bench:aud",
        )
        lg.connect_subs(
            {**target.dialect, "rights": read_only, "role_every": 1, "role": "bench-vip"},
            target.port,
            10,
            "bench:aud10",
            start=5000,
        )
        lg.connect_pub(target.dialect, target.pub_port)
        out: dict[str, Any] = {"events_per_s": rate_events}
        for label, feed in (("10_of_1000", "bench:aud"), ("10_of_10", "bench:aud10")):
            recs = [
                step(
                    ctx,
                    lg,
                    target,
                    deliveries_per_s=rate_events * 10,
                    n_match=10,
                    feed=feed,
                    cap_ms=s.cap_p99_ms_1k,
                    audience=audience,
                    duration=s.step_secs,
                )
                for _ in range(s.repeats)
            ]
            per_event = median([(r["server_us_per_delivery"] or 0) * 10 for r in recs])
            out[label] = {
                "us_per_event": per_event,
                "loss": max(r["loss"] for r in recs),
                "leaked": max(r["extra"] for r in recs),  # deliveries to subscribers outside the audience
                "p99_ms": median([r["p99_ms"] for r in recs]),
                "steps": recs,
            }
        a, b = out["10_of_1000"]["us_per_event"], out["10_of_10"]["us_per_event"]
        out["ratio"] = round(a / b, 2) if a and b else None
        return out
    finally:
        lg.close()


def group_peer(ctx: Ctx, target: T.Target) -> dict[str, Any]:
    """A peer's sustainable fan-out at N=1000: same ladder and criteria as ours."""
    lg = LoadgenClient(ctx.logdir, f"{target.name}-peer")
    try:
        lg.connect_subs(target.dialect, target.port, 1000, "bench:room")
        lg.connect_pub(target.dialect, target.pub_port)
        s = ctx.settings
        return ladder(ctx, lg, target, n=1000, feed="bench:room", cap_ms=s.cap_p99_ms_1k, goal_ms=s.goal_p99_ms_1k)
    finally:
        lg.close()
