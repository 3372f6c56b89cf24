"""``python -m feedbench [--quick] [--json PATH] [--only GROUPS] [--skip GROUPS]``

Runs the benchmark groups in priority order within a time budget (``--quick``: under 5 minutes in
total), prints a results table and optionally writes the JSON document. Everything it starts is
stopped on the way out -- normal exit, exception, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import report
from . import scenarios as S
from . import targets as T
from .procs import raise_nofile, stop_all

# (group name, minimum seconds of budget it needs, needs our server)
GROUPS: list[tuple[str, float, bool]] = [
    ("redis", 10, False),
    ("raw_ws", 40, False),
    ("ours_ws", 60, True),
    ("peer_python_socketio", 20, False),
    ("peer_django_channels", 20, False),
    ("peer_socketio_node", 20, False),
    ("raw_personal", 15, False),
    ("ours_personal", 25, True),
    ("raw_growth", 20, False),
    ("ours_growth", 25, True),
    ("ours_audience", 15, True),
    ("ours_10k_w2", 20, True),
]


def run_group(ctx: S.Ctx, name: str) -> Any:
    """Start the target(s) a group needs, run it, and stop them whatever happens."""
    s = ctx.settings
    logdir, redis = ctx.logdir, ctx.redis
    started: list[T.Target] = []

    def start(make: Callable[[], T.Target]) -> T.Target:
        t = make()
        started.append(t)
        return t

    def ours(workers: int = 1, tag: str = "") -> T.OursTarget:
        return start(lambda: T.OursTarget(logdir, redis.url(0), ctx.secret, workers=workers, tag=f"{name}{tag}"))  # type: ignore[return-value]

    redis.flush()
    try:
        if name == "redis":
            return T.redis_benchmark(redis.port, 20_000 if s.quick else 100_000)
        if name == "raw_ws":
            return S.group_ws(ctx, start(lambda: T.RawTarget(logdir)), with_http=False)
        if name == "ours_ws":
            return S.group_ws(ctx, ours(), with_http=True)
        if name == "peer_python_socketio":
            return S.group_peer(ctx, start(lambda: T.PySocketIOTarget(logdir, redis.url(0))))
        if name == "peer_django_channels":
            return S.group_peer(ctx, start(lambda: T.ChannelsTarget(logdir, redis.url(0))))
        if name == "peer_socketio_node":
            return S.group_peer(ctx, start(lambda: T.NodeSocketIOTarget(logdir, redis.url(0))))
        if name == "raw_personal":
            return S.group_personal(ctx, start(lambda: T.RawTarget(logdir)), None)
        if name == "ours_personal":
            # Subscribers on one instance, publishes into a second one: the first one's CPU is then
            # the pure cost of delivering (Redis pub/sub in, WebSocket out).
            return S.group_personal(ctx, ours(tag="-deliver"), ours(tag="-ingest"))
        if name == "raw_growth":
            return S.group_growth(ctx, start(lambda: T.RawTarget(logdir)), big_goal_step=True)
        if name == "ours_growth":
            return S.group_growth(ctx, ours(), big_goal_step=True)
        if name == "ours_audience":
            return S.group_audience(ctx, ours())
        if name == "ours_10k_w2":
            return S.group_fanout_10k(ctx, ours(workers=2))
        raise ValueError(f"unknown group {name}")
    except BaseException:
        for t in started:
            if not t.alive():
                ctx.say(f"  {t.name} died; log tail:\n{t.log_tail(15)}")
        raise
    finally:
        for t in reversed(started):
            t.stop()


def _git_rev() -> str | None:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "-C", str(T.REPO_DIR), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False).stdout.strip() or None
    return None


def _on_signal(signum: int, frame: Any) -> None:
    # Turn SIGTERM/SIGHUP into an exception so ``finally`` blocks stop every child process.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short steps, one repeat, < 5 minutes")
    ap.add_argument("--json", metavar="PATH", help="write the results document here")
    ap.add_argument("--only", help="comma-separated groups to run (default: all): " + ",".join(g for g, _, _ in GROUPS))
    ap.add_argument("--skip", help="comma-separated groups to skip")
    ap.add_argument("--cap-p99-ms", type=float, default=None,
                    help="p99 cap for a fan-out step (N=1000) to count as kept up (default 500)")
    ap.add_argument("--budget", type=float, default=None, help="override the time budget in seconds")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    nofile = raise_nofile()
    settings = S.Settings.make(args.quick, args.cap_p99_ms)
    if args.budget:
        settings.budget_secs = args.budget
    only = set(args.only.split(",")) if args.only else None
    skip = set(args.skip.split(",")) if args.skip else set()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = T.BENCH_DIR / "results" / f"run-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    print(f"feedbench: {'quick' if args.quick else 'full'} run, budget {settings.budget_secs:.0f}s, "
          f"open files {nofile}, logs in {logdir.relative_to(T.REPO_DIR)}", flush=True)

    groups: dict[str, Any] = {}
    ctx: S.Ctx | None = None
    t0 = time.monotonic()
    interrupted = False
    try:
        redis = T.RedisServer(logdir)
        ctx = S.Ctx(settings=settings, logdir=logdir, redis=redis, secret=secrets.token_urlsafe(32))
        ctx.ours_ok, ctx.ours_note = T.ours_available()
        ctx.say(f"our server: {'available' if ctx.ours_ok else 'NOT available (' + ctx.ours_note + ')'}")
        for name, need, needs_ours in GROUPS:
            if (only and name not in only) or name in skip:
                continue
            if needs_ours and not ctx.ours_ok:
                groups[name] = {"skipped": "our server not available: " + ctx.ours_note}
                continue
            if ctx.remaining() < need:
                groups[name] = {"skipped": f"time budget ({ctx.remaining():.0f}s left, needs ~{need:.0f}s)"}
                ctx.say(f"skip {name}: time budget")
                continue
            ctx.say(f"== {name}")
            g0 = time.monotonic()
            try:
                groups[name] = run_group(ctx, name)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 -- one broken group must not sink the run
                groups[name] = {"error": f"{type(exc).__name__}: {exc}"}
                ctx.say(f"  {name} FAILED: {type(exc).__name__}: {str(exc)[:1500]}")
                with open(logdir / "errors.log", "a") as fh:
                    fh.write(f"== {name}\n{traceback.format_exc()}\n")
            ctx.say(f"   {name} took {time.monotonic() - g0:.1f}s")
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping everything", flush=True)
    finally:
        stop_all()

    ours_ok = bool(ctx and ctx.ours_ok)
    sc = report.build(groups, ours_ok)
    checks = report.verdicts(sc)
    print()
    print(report.table(sc, checks, ours_ok))
    doc = {
        "scenarios": sc,
        "goals": {k: {"goal": g, "pass": checks[k]} for k, g, _ in report.GOALS},
        "meta": {
            "mode": "quick" if args.quick else "full",
            "duration_s": round(time.monotonic() - t0, 1),
            "interrupted": interrupted,
            "commit": _git_rev(),
            "ours_available": ours_ok,
            "ours_note": ctx.ours_note if ctx else None,
            "cpus": os.cpu_count(),
            "keep_up_cap_p99_ms": {"n1000": settings.cap_p99_ms_1k, "n10000": settings.cap_p99_ms_10k},
            "goal_p99_ms": {"n1000": settings.goal_p99_ms_1k, "n10000": settings.goal_p99_ms_10k},
            "python": sys.version.split()[0],
            "logdir": str(logdir),
        },
        "details": groups,
    }
    (logdir / "results.json").write_text(json.dumps(doc, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str))
        print(f"\nwrote {args.json}")
    print(f"total {time.monotonic() - t0:.0f}s")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
