"""``bench/run --cluster``: the write, read and fan-out scenarios on a local 3-master cluster, each
reported as a ratio to the same scenario on one node in the same run.

Both Redis setups use the same ``redis-server`` binary (the harness's single node is Debian's
Redis): the cluster is ``server.devcluster.LocalCluster`` with 3 masters and no replicas (replicas
would only add Redis CPU, which is not what is compared), started in a child process with the
project's interpreter (the harness's venv does not have the server package).

Scenarios (the same requests against both servers, interleaved repeat by repeat so drift in the
host's load hits both alike):

- ``write``: POST one activity, 50 connections (server CPU µs per request);
- ``read``: GET a history page of 50 (server CPU µs per request);
- ``fanout_100``: one feed, 100 subscribers, 20,000 deliveries/s (server CPU µs per delivery);
- ``personal_300``: 300 feeds with one subscriber each, 1,000 deliveries/s: many channels spread
  over every master, so the cluster broker holds three connections (server CPU µs per delivery,
  which here includes the write of each event: one write, one delivery).

The goal (issue 10): server CPU per write and per delivery on the cluster ≤ 1.3x single node.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import scenarios as S
from . import targets as T
from .control import BenchError, LoadgenClient, http_load
from .dialects import make_token
from .procs import Managed, http_request

GOAL_RATIO = 1.3

_CHILD = """
import json, signal, sys
from pathlib import Path
from server.devcluster import LocalCluster
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
cluster = LocalCluster(Path(sys.argv[1]), masters=3, replicas=0, binary=sys.argv[2]).start()
try:
    info = {"ports": [n.port for n in cluster.nodes], "pids": [n.proc.pid for n in cluster.nodes]}
    print(json.dumps(info), flush=True)
    sys.stdin.read()
finally:
    cluster.stop()
"""


class ClusterRedis:
    """A local 3-master cluster with ``RedisServer``'s interface (url, flush, cpu_pids, stop)."""

    def __init__(self, logdir: Path, binary: str) -> None:
        self.proc = Managed(
            "cluster",
            [str(T.OURS_PY), "-c", _CHILD, str(logdir / "cluster"), binary],
            cwd=T.REPO_DIR,
            log=logdir / "cluster.log",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        out = self.proc.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out.fileno()], [], [], 60)
        line = os.read(out.fileno(), 65536).decode() if ready else ""
        if not line.strip():
            self.proc.stop()
            raise T.StartError(f"local cluster did not start:\n{self.proc.log_tail()}")
        info = json.loads(line)
        self.ports: list[int] = info["ports"]
        self.pids: list[int] = info["pids"]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def flush(self) -> None:
        for port in self.ports:
            T.redis_command(port, "FLUSHALL")

    def cpu_pids(self) -> list[int]:
        return list(self.pids)

    def stop(self) -> None:
        self.proc.stop()


def _http(ctx: S.Ctx, target: T.OursTarget, kind: str, req: dict[str, Any], rep: int) -> dict[str, Any]:
    spec = {
        "port": target.port,
        "conns": 50,
        "requests": [req],
        "warmup": 0.5,
        "duration": ctx.settings.http_secs,
        "cpu": {"server": target.cpu_pids(), "redis": ctx.redis.cpu_pids()},
    }
    r = http_load(ctx.logdir, f"cluster-{target.name}-{kind}-{rep}", spec)
    bad = {k: v for k, v in r["statuses"].items() if not str(k).startswith("2")}
    if bad:
        raise BenchError(f"{kind} on {target.name}: non-2xx answers {bad}: {r['first_bad'][:1]}")
    us = S._us(r["cpu_secs"]["server"], r["requests"])
    ctx.say(f"    {target.name:>16} {kind:<12} {r['ok_per_s']:>9,.0f} ok/s  srv {S._fmt(us)} µs/request")
    return {"per_s": r["ok_per_s"], "server_us": us, "p99_ms": r["p99_ms"]}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def group_cluster(ctx: S.Ctx, starter: Any) -> dict[str, Any]:
    """Our server on one node and on a 3-master cluster; every scenario on both, interleaved."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server not found")
    cluster = ClusterRedis(ctx.logdir, binary)
    setups: dict[str, tuple[S.Ctx, T.OursTarget]] = {}
    lgs: dict[str, LoadgenClient] = {}
    try:
        for name, redis in (("single", ctx.redis), ("cluster", cluster)):
            sub = dataclasses.replace(ctx, redis=redis)  # type: ignore[arg-type]
            target = T.OursTarget(ctx.logdir, redis.url(0), ctx.secret, tag=f"cluster-{name}")
            target.name = f"ours-{name}"
            starter.started.append(target)
            setups[name] = (sub, target)
        token = make_token(ctx.secret, "bench-cluster", {"bench:*": ["read", "write", "member"]})
        auth = {"Authorization": f"Bearer {token}"}
        one = {"verb": "post", "object": "o:1", "audience": ["members"]}
        batch = {"activities": [{**one, "object": f"o:{i}"} for i in range(100)]}
        requests = {
            "write": {
                "method": "POST",
                "path": "/v1/feeds/bench:w/activities",
                "headers": auth,
                "body": json.dumps(one),
            },
            "read": {"method": "GET", "path": "/v1/feeds/bench:hist/activities?limit=50", "headers": auth},
        }
        for name, (_, target) in setups.items():
            st, body = http_request(
                target.port, "POST", "/v1/feeds/bench:hist/activities", json.dumps(batch).encode(), auth
            )
            if st != 201:
                raise BenchError(f"prefill on {name} answered {st}: {body[:300]!r}")
            lg = lgs[name] = LoadgenClient(ctx.logdir, f"cluster-{name}")
            # Subscriber i watches bench:p{i}: the per-feed ones first, so their i is the feed number.
            lg.connect_subs(target.dialect, target.port, 300, "bench:p{i}")
            lg.connect_subs(target.dialect, target.port, 100, "bench:room", start=300)
            lg.connect_pub(target.dialect, target.pub_port)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n in setups}
        for rep in range(max(3, ctx.settings.repeats)):
            for name, (sub, target) in setups.items():
                for kind, req in requests.items():
                    runs[name].setdefault(kind, []).append(_http(sub, target, kind, req, rep))
                r = S.step(sub, lgs[name], target, deliveries_per_s=20_000, n_match=100, feed="bench:room", cap_ms=500)
                runs[name].setdefault("fanout_100", []).append(
                    {"per_s": r["achieved_per_s"], "server_us": r["server_us_per_delivery"], "p99_ms": r["p99_ms"]}
                )
                r = S.step(
                    sub,
                    lgs[name],
                    target,
                    deliveries_per_s=1_000,
                    n_match=1,
                    feed="",
                    cap_ms=500,
                    feeds={"feed_fmt": "bench:p{i}", "feed_count": 300},
                )
                runs[name].setdefault("personal_300", []).append(
                    {"per_s": r["achieved_per_s"], "server_us": r["server_us_per_delivery"], "p99_ms": r["p99_ms"]}
                )
    finally:
        for lg in lgs.values():
            lg.close()
        for _, target in setups.values():
            target.stop()
        cluster.stop()
    out: dict[str, Any] = {"goal_ratio": GOAL_RATIO, "scenarios": {}}
    for kind in runs["single"]:
        single = S.median([r["server_us"] for r in runs["single"][kind]])
        clus = S.median([r["server_us"] for r in runs["cluster"][kind]])
        out["scenarios"][kind] = {
            "single_us": single,
            "cluster_us": clus,
            "cpu_ratio": _ratio(clus, single),
            "single_per_s": S.median([r["per_s"] for r in runs["single"][kind]]),
            "cluster_per_s": S.median([r["per_s"] for r in runs["cluster"][kind]]),
            "single_p99_ms": S.median([r["p99_ms"] for r in runs["single"][kind]]),
            "cluster_p99_ms": S.median([r["p99_ms"] for r in runs["cluster"][kind]]),
            "runs": runs["single"][kind] + runs["cluster"][kind],
        }
        cpu_ratio = out["scenarios"][kind]["cpu_ratio"]
        out["scenarios"][kind]["meets_goal"] = cpu_ratio is not None and cpu_ratio <= GOAL_RATIO
    return out


def table(result: dict[str, Any]) -> str:
    """The ``--cluster`` report: per scenario, server CPU and throughput, cluster / single node."""
    if "scenarios" not in result:
        return f"cluster comparison: {result}"
    lines = [
        f"{'scenario':<14} {'µs single':>10} {'µs cluster':>11} {'CPU ratio':>10} "
        f"{'/s single':>10} {'/s cluster':>11} {'thr. ratio':>10}  goal ≤{GOAL_RATIO}x",
    ]
    for kind, r in result["scenarios"].items():
        thr = _ratio(r["cluster_per_s"], r["single_per_s"])
        lines.append(
            f"{kind:<14} {S._fmt(r['single_us']):>10} {S._fmt(r['cluster_us']):>11} {r['cpu_ratio'] or 'n/a':>10} "
            f"{r['single_per_s'] or 0:>10,.0f} {r['cluster_per_s'] or 0:>11,.0f} {thr or 'n/a':>10}  "
            f"{'ok' if r['meets_goal'] else 'MISSED'}"
        )
    lines.append("(µs = server CPU per request for write/read, per delivery for fan-out; median of the repeats)")
    return "\n".join(lines)


__all__ = ["ClusterRedis", "group_cluster", "table"]
