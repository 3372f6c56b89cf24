"""The harness's side of the load generators: start them as processes and talk to them.

Every call carries a timeout; a load generator that does not answer in time is killed and the
scenario fails with :class:`BenchError` instead of hanging the run.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from .procs import Managed
from .targets import BENCH_DIR, BENCH_PY


class BenchError(RuntimeError):
    pass


class LoadgenClient:
    """A ``feedbench.loadgen`` process holding WebSocket connections for one target."""

    def __init__(self, logdir: Path, tag: str) -> None:
        self.proc = Managed(
            f"loadgen-{tag}",
            [BENCH_PY, "-m", "feedbench.loadgen"],
            cwd=BENCH_DIR,
            log=logdir / f"loadgen-{tag}.log",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            new_session=False,  # stays in the harness's group: Ctrl-C reaches it too
        )
        self._buf = b""

    def call(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        p = self.proc.proc
        assert p.stdin is not None and p.stdout is not None
        try:
            p.stdin.write((json.dumps(cmd) + "\n").encode())
            p.stdin.flush()
        except BrokenPipeError as exc:
            raise BenchError(f"load generator died: {self.proc.log_tail()}") from exc
        deadline = time.monotonic() + timeout
        fd = p.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.proc.stop(grace=1)
                raise BenchError(f"load generator did not answer {cmd['cmd']!r} within {timeout:.0f}s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise BenchError(f"load generator exited during {cmd['cmd']!r}:\n{self.proc.log_tail()}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        result = json.loads(line)
        if not result.get("ok", False):
            raise BenchError(f"load generator {cmd['cmd']!r} failed: {result.get('error')}")
        return result

    def connect_subs(
        self, dialect: dict[str, Any], port: int, count: int, feed: str, start: int = 0, concurrency: int = 100
    ) -> dict[str, Any]:
        res = self.call(
            {
                "cmd": "connect_subs",
                "dialect": dialect,
                "port": port,
                "count": count,
                "feed": feed,
                "start": start,
                "concurrency": concurrency,
            },
            timeout=60 + count / 50,
        )
        if res["failed"]:
            raise BenchError(f"{res['failed']} of {count} subscribers failed to connect: {res['errors']}")
        return res

    def connect_pub(self, dialect: dict[str, Any], port: int) -> None:
        self.call({"cmd": "connect_pub", "dialect": dialect, "port": port}, timeout=30)

    def fanout(self, **kw: Any) -> dict[str, Any]:
        timeout = float(kw["duration"]) + float(kw.get("drain", 2.0)) + 60
        return self.call({"cmd": "fanout", **kw}, timeout=timeout)

    def settle(self, timeout: float = 15.0) -> float:
        return float(self.call({"cmd": "settle", "quiet": 0.5, "timeout": timeout}, timeout=timeout + 10)["secs"])

    def ingest(self, **kw: Any) -> dict[str, Any]:
        return self.call({"cmd": "ingest", **kw}, timeout=float(kw["duration"]) + 30)

    def close(self) -> None:
        if self.proc.alive():
            try:
                self.call({"cmd": "close"}, timeout=15)
            except BenchError:
                pass
        self.proc.stop(grace=2)


def http_load(logdir: Path, tag: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one ``feedbench.httpload`` process to completion and return its JSON result."""
    timeout = float(spec.get("warmup", 0.5)) + float(spec.get("duration", 3)) + 30
    log = logdir / f"httpload-{tag}.log"
    p = Managed(
        f"httpload-{tag}",
        [BENCH_PY, "-m", "feedbench.httpload", json.dumps(spec)],
        cwd=BENCH_DIR,
        log=log,
        stdout=subprocess.PIPE,
        new_session=False,
    )
    try:
        out, _ = p.proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"HTTP load generator timed out ({tag})") from exc
    finally:
        p.stop(grace=1)
    if p.proc.returncode != 0 or not out:
        raise BenchError(f"HTTP load generator failed ({tag}): {p.log_tail()}")
    return json.loads(out.decode().strip().splitlines()[-1])
