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

from . import cluster as C
from . import follows as F
from . import report
from . import scenarios as S
from . import targets as T
from .procs import raise_nofile, stop_all


class Starter:
    """Starts the targets one group needs and remembers them, so they can all be stopped."""

    def __init__(self, ctx: S.Ctx, group: str) -> None:
        self.ctx, self.group = ctx, group
        self.started: list[T.Target] = []

    def _keep(self, target: T.Target) -> T.Target:
        self.started.append(target)
        return target

    def raw(self) -> T.Target:
        return self._keep(T.RawTarget(self.ctx.logdir))

    def ours(self, workers: int = 1, tag: str = "", overrides: dict[str, dict[str, Any]] | None = None) -> T.OursTarget:
        ctx = self.ctx
        t = T.OursTarget(
            ctx.logdir, ctx.redis.url(0), ctx.secret, workers=workers, overrides=overrides, tag=f"{self.group}{tag}"
        )
        self._keep(t)
        return t

    def peer(self, cls: type[T.Target]) -> T.Target:
        return self._keep(cls(self.ctx.logdir, self.ctx.redis.url(0)))  # type: ignore[call-arg]

    def stop(self) -> None:
        for t in reversed(self.started):
            t.stop()


Runner = Callable[[S.Ctx, Starter], Any]

# (group, minimum seconds of budget it needs, needs our server, runner) -- in priority order: with
# --quick, what does not fit into the budget is skipped from the end.
GROUPS: list[tuple[str, float, bool, Runner]] = [
    ("redis", 10, False, lambda c, st: T.redis_benchmark(c.redis.port, 20_000 if c.settings.quick else 100_000)),
    ("raw_ws", 40, False, lambda c, st: S.group_ws(c, st.raw(), with_http=False)),
    ("ours_ws", 50, True, lambda c, st: S.group_ws(c, st.ours(), with_http=True)),
    (
        "ours_getstream",
        20,
        True,
        lambda c, st: S.group_getstream(
            c,
            st.ours(
                tag="-getstream",
                overrides={"getstream": {"api_key": S.GETSTREAM_KEY, "api_secret": S.GETSTREAM_SECRET, "app_id": "1"}},
            ),
        ),
    ),
    ("raw_personal", 15, False, lambda c, st: S.group_personal(c, st.raw(), None)),
    # Subscribers on one instance, publishes into a second one: the first one's CPU is then the
    # pure cost of delivering (Redis pub/sub in, WebSocket out).
    ("ours_personal", 25, True, lambda c, st: S.group_personal(c, st.ours(tag="-deliver"), st.ours(tag="-ingest"))),
    ("ours_audience", 12, True, lambda c, st: S.group_audience(c, st.ours())),
    # Idle memory with permessage-deflate negotiated (the compressor state is per connection).
    (
        "ours_memory_deflate",
        20,
        True,
        lambda c, st: S.group_memory_deflate(
            c, st.ours(tag="-plain"), st.ours(tag="-deflate", overrides={"server": {"per_message_deflate": True}})
        ),
    ),
    # Follows: writes with follows and [getstream] on, a 10,000-follower fan-out, enriched reads.
    (
        "ours_follows",
        45,
        True,
        lambda c, st: F.group_follows(
            c,
            st.ours(tag="-follows"),
            # The second server's fan-out workers are off: the fan-out's CPU is the first one's.
            st.ours(tag="-follows-gs", overrides={"getstream": F.GETSTREAM, "fanout": {"enabled": False}}),
        ),
    ),
    ("ours_10k_w2", 18, True, lambda c, st: S.group_fanout_10k(c, st.ours(workers=2))),
    ("peer_python_socketio", 15, False, lambda c, st: S.group_peer(c, st.peer(T.PySocketIOTarget))),
    ("peer_django_channels", 15, False, lambda c, st: S.group_peer(c, st.peer(T.ChannelsTarget))),
    ("peer_socketio_node", 20, False, lambda c, st: S.group_peer(c, st.peer(T.NodeSocketIOTarget))),
    ("raw_growth", 20, False, lambda c, st: S.group_growth(c, st.raw(), big_goal_step=True)),
    # The 10k-subscriber one-process step at 50k/s is for reference only: full runs only, for ours.
    ("ours_growth", 22, True, lambda c, st: S.group_growth(c, st.ours(), big_goal_step=not c.settings.quick)),
    # Only with --cluster (or --only cluster): our server on a local 3-master cluster vs one node.
    ("cluster", 60, True, lambda c, st: C.group_cluster(c, st)),
]


def run_group(ctx: S.Ctx, name: str, runner: Runner) -> Any:
    """Start the target(s) a group needs, run it, and stop them whatever happens."""
    ctx.redis.flush()  # our private Redis: every group starts from an empty one
    starter = Starter(ctx, name)
    try:
        return runner(ctx, starter)
    except BaseException:
        for t in starter.started:
            if not t.alive():
                ctx.say(f"  {t.name} died; log tail:\n{t.log_tail(15)}")
        raise
    finally:
        starter.stop()


def _git_rev() -> str | None:
    with contextlib.suppress(Exception):
        return (
            subprocess.run(
                ["git", "-C", str(T.REPO_DIR), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
            or None
        )
    return None


def _on_signal(signum: int, frame: Any) -> None:
    # Turn SIGTERM/SIGHUP into an exception so ``finally`` blocks stop every child process.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="short steps, one repeat, < 5 minutes")
    ap.add_argument("--json", metavar="PATH", help="write the results document here")
    ap.add_argument("--only", help="comma-separated groups to run (default: all): " + ",".join(g[0] for g in GROUPS))
    ap.add_argument("--skip", help="comma-separated groups to skip")
    ap.add_argument(
        "--cap-p99-ms",
        type=float,
        default=None,
        help="p99 cap for a fan-out step (N=1000) to count as kept up (default 500)",
    )
    ap.add_argument(
        "--cluster",
        action="store_true",
        help="only the cluster comparison: write, read and fan-out on a local 3-master cluster vs one node",
    )
    ap.add_argument("--budget", type=float, default=None, help="override the time budget in seconds")
    args = ap.parse_args(argv)

    # SIGINT too: a shell that starts us in the background ignores SIGINT, which would otherwise
    # leave Ctrl-C-like interrupts without effect.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    nofile = raise_nofile()
    settings = S.Settings.make(args.quick, args.cap_p99_ms)
    if args.budget:
        settings.budget_secs = args.budget
    only = set(args.only.split(",")) if args.only else None
    if args.cluster:
        only = {"cluster"}
    skip = set(args.skip.split(",")) if args.skip else set()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = T.BENCH_DIR / "results" / f"run-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    print(
        f"feedbench: {'quick' if args.quick else 'full'} run, budget {settings.budget_secs:.0f}s, "
        f"open files {nofile}, logs in {logdir.relative_to(T.REPO_DIR)}",
        flush=True,
    )

    groups: dict[str, Any] = {}
    ctx: S.Ctx | None = None
    t0 = time.monotonic()
    interrupted = False
    try:
        redis = T.RedisServer(logdir)
        ctx = S.Ctx(settings=settings, logdir=logdir, redis=redis, secret=secrets.token_urlsafe(32))
        ctx.ours_ok, ctx.ours_note = T.ours_available()
        ctx.say(f"our server: {'available' if ctx.ours_ok else 'NOT available (' + ctx.ours_note + ')'}")
        for name, need, needs_ours, runner in GROUPS:
            if (only and name not in only) or name in skip or (name == "cluster" and not only):
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
                groups[name] = run_group(ctx, name, runner)
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
    noise = report.host_noise(groups)
    print()
    if args.cluster:
        print(C.table(groups.get("cluster") or {}))
    else:
        print(report.table(sc, checks, ours_ok))
    if noise["steps"]:
        print(
            f"\nhost noise: other processes (and kernel softirq) kept {noise['median_other_cores']:.2f} cores busy"
            f" on median during the {noise['steps']} measured steps; {noise['noisy_steps']} steps were noisy"
            f" (>{S.NOISY_CORES} cores). Treat figures from noisy steps with care."
        )
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
            "host_noise": noise,
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
