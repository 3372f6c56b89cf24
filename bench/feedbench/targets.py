"""The servers under test and how to start them.

Each target starts its process(es) on a free loopback port, waits until they answer, and exposes:

``port`` / ``pub_port``  where subscribers / the publisher connect (they differ only for the Node
                         peer, see ``peers/socketio_node/server.js``)
``dialect``              the JSON spec of the client dialect (``feedbench.dialects``)
``cpu_pids()``           the processes whose CPU time is "the server's cost" (the whole process tree,
                         so ``--workers 2`` counts both workers and their parent)
``stop()``               terminate everything it started

All of them share the harness's private Redis (never the machine's shared one).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from .procs import Managed, free_port, http_get, port_open, proc_tree

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / "peers"
BENCH_PY = sys.executable  # bench/.venv's interpreter: run_harness is started with it
OURS_PY = REPO_DIR / ".venv" / "bin" / "python"


class StartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def wait_until(pred, timeout: float, what: str, proc: Managed | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise StartError(f"{what}: process exited (code {proc.proc.returncode})\n{proc.log_tail()}")
        with contextlib.suppress(OSError, ValueError, IndexError):
            if pred():
                return
        time.sleep(0.1)
    raise StartError(f"{what}: not ready after {timeout:.0f}s\n{proc.log_tail() if proc else ''}")


# -- Redis ---------------------------------------------------------------------------------------------


def redis_command(port: int, *args: str, timeout: float = 5.0) -> bytes:
    """Send one command in RESP and return the raw reply (enough for FLUSHALL / PING / INFO)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload.encode())
        data = s.recv(1 << 20)
    return data


class RedisServer:
    """A private ``redis-server`` for this run: no persistence, loopback only, free port."""

    def __init__(self, logdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StartError("redis-server not found (apt-get install redis-server)")
        self.port = free_port()
        self.proc = Managed(
            "redis",
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                "--maxclients",
                "20000",
                "--dir",
                str(logdir),
            ],
            log=logdir / "redis.log",
        )
        wait_until(lambda: redis_command(self.port, "PING").startswith(b"+PONG"), 10, "redis-server", self.proc)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def flush(self) -> None:
        """Empty *our own* instance between targets so no server sees another's data."""
        redis_command(self.port, "FLUSHALL")

    def cpu_pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self) -> None:
        self.proc.stop()


def redis_benchmark(port: int, requests: int, clients: int = 50, timeout: float = 120) -> dict[str, float]:
    """``redis-benchmark``: SET, GET and PUBLISH requests/s on our Redis (the headroom figure).

    PUBLISH is run as an explicit command because redis-benchmark's ``-t publish`` only exists in
    newer releases.
    """
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    base = [binary, "-h", "127.0.0.1", "-p", str(port), "-q", "-n", str(requests), "-c", str(clients)]
    out = ""
    for extra in (["-t", "set,get"], ["PUBLISH", "benchchan", "hello"]):
        out += subprocess.run(base + extra, capture_output=True, text=True, timeout=timeout, check=False).stdout
    rates: dict[str, float] = {}
    # Result lines look like "SET: 77220.08 requests per second, p50=0.327 msec"; -q also prints
    # progress separated by '\r', so only the last '\r'-segment of each line counts.
    for line in out.splitlines():
        line = line.split("\r")[-1]
        name, _, rest = line.partition(":")
        if "requests per second" in rest:
            with contextlib.suppress(ValueError):
                rates[name.split()[0].lower()] = float(rest.split()[0])
    return rates


# -- targets -------------------------------------------------------------------------------------------


class Target:
    """Base: one or more managed processes serving the WebSocket scenario."""

    name = "target"
    label = "target"

    def __init__(self) -> None:
        self.procs: list[Managed] = []
        self.port = 0
        self.pub_port = 0
        self.dialect: dict[str, Any] = {}

    def cpu_pids(self) -> list[int]:
        pids: list[int] = []
        for p in self.procs:
            pids.extend(proc_tree(p.pid))
        return pids

    def alive(self) -> bool:
        return all(p.alive() for p in self.procs)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(f"[{p.name}] {p.log_tail(n)}" for p in self.procs)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()


class RawTarget(Target):
    """Baseline: ``websockets`` broadcast server, no Redis (``peers/raw_websockets``)."""

    name = "raw"
    label = "raw websockets broadcast"

    def __init__(self, logdir: Path) -> None:
        super().__init__()
        self.port = self.pub_port = free_port()
        p = Managed(
            "raw",
            [BENCH_PY, str(PEERS_DIR / "raw_websockets" / "server.py"), "--port", str(self.port)],
            log=logdir / f"raw-{self.port}.log",
        )
        self.procs.append(p)
        wait_until(lambda: port_open(self.port), 20, "raw websockets server", p)
        self.dialect = {"name": "raw"}


def _start_uvicorn_peer(target: Target, logdir: Path, name: str, app: str, folder: str, env: dict[str, str]) -> None:
    """Run a Python peer's ASGI ``app`` under uvicorn from ``peers/<folder>`` on a free port."""
    target.port = target.pub_port = free_port()
    argv = [BENCH_PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(target.port),
            "--log-level", "warning", "--no-access-log", "--backlog", "4096"]  # fmt: skip
    p = Managed(name, argv, cwd=PEERS_DIR / folder, env={**os.environ, **env}, log=logdir / f"{name}-{target.port}.log")
    target.procs.append(p)
    wait_until(lambda: port_open(target.port), 30, f"{name} peer", p)


class ChannelsTarget(Target):
    """Peer: Django Channels + channels_redis under uvicorn (``peers/django_channels``)."""

    name = "django_channels"
    label = "Django Channels + channels_redis"

    def __init__(self, logdir: Path, redis_url: str, layer: str = "pubsub") -> None:
        super().__init__()
        env = {"REDIS_URL": redis_url, "CHANNEL_LAYER": layer}
        _start_uvicorn_peer(self, logdir, "channels", "benchpeer.asgi:application", "django_channels", env)
        self.dialect = {"name": "channels"}


class PySocketIOTarget(Target):
    """Peer: python-socketio + AsyncRedisManager under uvicorn (``peers/python_socketio``)."""

    name = "python_socketio"
    label = "python-socketio + AsyncRedisManager"

    def __init__(self, logdir: Path, redis_url: str) -> None:
        super().__init__()
        _start_uvicorn_peer(self, logdir, "python-socketio", "app:app", "python_socketio", {"REDIS_URL": redis_url})
        self.dialect = {"name": "socketio"}


class NodeSocketIOTarget(Target):
    """Peer: Node socket.io + @socket.io/redis-adapter; two instances (subscribers / publisher)."""

    name = "socketio_node"
    label = "Node socket.io + redis-adapter"

    def __init__(self, logdir: Path, redis_url: str) -> None:
        super().__init__()
        node = shutil.which("node")
        if node is None:
            raise StartError("node not found")
        env = {**os.environ, "REDIS_URL": redis_url}
        cwd = PEERS_DIR / "socketio_node"
        self.port, self.pub_port = free_port(), free_port()
        for role, port in (("subs", self.port), ("pub", self.pub_port)):
            p = Managed(
                f"socketio-node-{role}",
                [node, "server.js", "--port", str(port)],
                cwd=cwd,
                env=env,
                log=logdir / f"socketio-node-{role}-{port}.log",
            )
            self.procs.append(p)
            wait_until(lambda port=port: port_open(port), 30, "node socket.io peer", p)
        self.dialect = {"name": "socketio"}


# -- ours ----------------------------------------------------------------------------------------------


def ours_available(timeout: float = 30) -> tuple[bool, str]:
    """Is our server there yet? ``server/cli.py`` exists and ``python -m server --help`` works."""
    if not (REPO_DIR / "server" / "cli.py").exists():
        return False, "server/cli.py does not exist yet"
    if not OURS_PY.exists():
        return False, f"{OURS_PY} missing"
    try:
        r = subprocess.run(
            [str(OURS_PY), "-m", "server", "--help"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, "python -m server --help timed out"
    if r.returncode != 0:
        return False, f"python -m server --help exited {r.returncode}: {(r.stderr or r.stdout)[-400:]}"
    return True, "ok"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v)} to TOML")


def dump_toml(doc: dict[str, dict[str, Any]]) -> str:
    """Write a two-level ``{section: {key: value}}`` document (all config.toml needs)."""
    out: list[str] = []
    top = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    out += [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for section, table in doc.items():
        if isinstance(table, dict):
            out.append(f"\n[{section}]")
            for k, v in table.items():
                if isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()) and v:
                    continue  # nested tables are not used by config.toml; skip rather than mis-write
                out.append(f"{k} = {_toml_value(v)}")
    return "\n".join(out) + "\n"


# Benchmark hygiene: no info logging, no demo page, no rate limits (the load is the point), and no
# SIGTERM drain delay (nobody is load-balancing onto these instances; it would only slow the run).
BENCH_OVERRIDES: dict[str, dict[str, Any]] = {
    "server": {"log_level": "warning", "demo": False, "http_rate_limit": "", "ws_rate_limit": "", "drain_delay": 0.0}
}


def ours_config(redis_url: str, secret: str, overrides: dict[str, dict[str, Any]] | None = None) -> str:
    """The repo's config.toml (all settings with their defaults) with the benchmark's overrides.

    Falls back to the SPEC §9 settings when the repo has no config.toml yet.
    """
    path = REPO_DIR / "config.toml"
    doc: dict[str, Any]
    if path.exists():
        doc = tomllib.loads(path.read_text())
    else:
        doc = {"server": {}, "redis": {}, "auth": {}, "feeds": {}}
    doc.setdefault("server", {}).update({"host": "127.0.0.1", "workers": 1})
    doc.setdefault("redis", {})["url"] = redis_url
    doc.setdefault("auth", {})["jwt_secret"] = secret
    # BENCH_OVERRIDES are only applied to settings the server actually has, so a renamed or
    # removed setting never makes the config invalid.
    for section, values in BENCH_OVERRIDES.items():
        for key, value in values.items():
            if key in doc.get(section, {}):
                doc[section][key] = value
    for section, values in (overrides or {}).items():
        doc.setdefault(section, {}).update(values)
    return dump_toml(doc)


class OursTarget(Target):
    """Our server: ``.venv/bin/python -m server --config <tmp> --port P [--workers N]``."""

    name = "ours"
    label = "ours"

    def __init__(
        self,
        logdir: Path,
        redis_url: str,
        secret: str,
        workers: int = 1,
        overrides: dict[str, dict[str, Any]] | None = None,
        tag: str = "",
    ) -> None:
        super().__init__()
        self.port = self.pub_port = free_port()
        self.secret = secret
        cfg = logdir / f"ours-{tag or self.port}.toml"
        cfg.write_text(ours_config(redis_url, secret, overrides))
        argv = [str(OURS_PY), "-m", "server", "--config", str(cfg), "--port", str(self.port)]
        if workers != 1:
            argv += ["--workers", str(workers)]
        env = {
            **os.environ,
            "FEED_REDIS__URL": redis_url,
            "FEED_AUTH__JWT_SECRET": secret,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("VIRTUAL_ENV", None)
        p = Managed(
            f"ours{'-w' + str(workers) if workers != 1 else ''}",
            argv,
            cwd=REPO_DIR,
            env=env,
            log=logdir / f"ours-{tag or self.port}.log",
        )
        self.procs.append(p)
        wait_until(lambda: http_get(self.port, "/healthz")[0] == 200, 60, "our server /healthz", p)
        wait_until(lambda: http_get(self.port, "/readyz")[0] == 200, 30, "our server /readyz", p)
        if workers > 1:
            # Workers may come up one after the other; wait until the tree has them all.
            wait_until(lambda: len(proc_tree(p.pid)) >= workers, 30, "our server workers", p)
        self.dialect = {"name": "ours", "secret": secret}
        self.workers = workers
