"""Helpers for fault tests: an own Redis, real server processes, a TCP proxy, recording clients.

Fault tests restart, kill, pause and flush Redis, so they never touch a shared one (``REDIS_URL``):
each test starts its own embedded Valkey (``RedisInstance``), restartable on the same port and
data directory. Servers run as real ``python -m server`` processes (``ServerProcess``) so that
``kill -9`` and ``SIGTERM`` mean what they mean in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
import websockets
from websockets.asyncio.client import ClientConnection

from server.auth import mint_token
from server.embedded import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "fault-secret-" + "y" * 24
TIMEOUT = 5.0


# -- Redis ------------------------------------------------------------------------------------------


class RedisInstance(EmbeddedRedis):
    """An own Valkey for destructive tests: kill -9, SIGSTOP/SIGCONT, restart on the same port."""

    def __init__(self, data_dir: Path, *, appendfsync: str = "everysec") -> None:
        super().__init__(data_dir, port=free_port(), appendfsync=appendfsync)
        self.paused = False

    def client(self) -> redis.Redis:
        """A synchronous client with a short timeout."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no final fsync."""
        pid = self.pid
        assert pid is not None
        self.resume()
        os.kill(pid, signal.SIGKILL)
        self.stop()  # reaps the child

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        if self.paused and self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def restart(self) -> None:
        """Start again on the same port and data dir (the append-only file is replayed)."""
        self.start()

    def close(self) -> None:
        """Teardown: resume if paused, then stop."""
        self.resume()
        self.stop()


# -- TCP proxy --------------------------------------------------------------------------------------


class TcpProxy:
    """A TCP proxy in front of Redis that can cut, stall (black-hole) or refuse connections."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stall(self) -> None:
        """Stop forwarding in both directions (bytes are held, connections stay open)."""
        self._flowing.clear()

    def unstall(self) -> None:
        """Forward again, held bytes first."""
        self._flowing.set()

    def cut(self) -> None:
        """Abort every open connection (both sides see a reset)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            dst.transport.abort()
            self._writers.discard(dst)


# -- server processes -------------------------------------------------------------------------------


def _env_name(section: str, key: str) -> str:
    return f"FEED_{section.upper()}__{key.upper()}"


class ServerProcess:
    """``python -m server`` in a child process, configured through ``FEED_*`` variables."""

    def __init__(
        self,
        tmp: Path,
        redis_url: str,
        prefix: str,
        *,
        workers: int = 1,
        name: str = "server",
        **sections: dict[str, Any],
    ) -> None:
        self.port = free_port()
        self.workers = workers
        self.name = name
        self.log_path = tmp / f"{name}-{self.port}.log"
        config = tmp / f"{name}-{self.port}.toml"
        config.write_text("# settings come from FEED_* variables\n")
        self.config = config
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        settings: dict[str, dict[str, Any]] = {
            "server": {"host": "127.0.0.1", "port": self.port, "log_level": "warning", "demo": False},
            "redis": {"url": redis_url, "key_prefix": prefix},
            "auth": {"jwt_secret": SECRET},
        }
        for section, values in sections.items():
            settings.setdefault(section, {}).update(values)
        for section, values in settings.items():
            for key, value in values.items():
                env[_env_name(section, key)] = value if isinstance(value, str) else orjson.dumps(value).decode()
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 20.0) -> ServerProcess:
        """Start and wait until ``/readyz`` answers 200."""
        args = [sys.executable, "-m", "server", "--config", str(self.config)]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base, timeout=1.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """``kill -9``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    async def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its return code."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout}s")
            await asyncio.sleep(0.02)
        return self.proc.returncode

    def stop(self) -> None:
        """Teardown: SIGTERM, then kill -9 after a few seconds (own children included)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # SIGINT twice skips the drain
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(8)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def token(self, sub: str, feeds: dict[str, list[str]] | None = None, **claims: Any) -> str:
        return mint_token(SECRET, sub, feeds=feeds, **claims)


# -- clients ----------------------------------------------------------------------------------------


async def ws_connect(url: str, token: str | None = None, **kwargs: Any) -> ClientConnection:
    """Connect and authenticate by header."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await asyncio.wait_for(
        websockets.connect(url, additional_headers=headers, open_timeout=TIMEOUT, **kwargs), TIMEOUT
    )


async def ws_send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await asyncio.wait_for(ws.send(orjson.dumps(message).decode()), TIMEOUT)


async def ws_recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


@dataclass
class Subscriber:
    """A client that (re)subscribes to one feed and records what it receives.

    On a lost connection it reconnects — to the next URL in ``urls`` — and resumes with
    ``since`` = the last (epoch, seq) it saw, as a well-behaved client would.
    """

    urls: list[str]
    token: str
    feed: str
    events: list[dict[str, Any]] = field(default_factory=list)
    resets: list[dict[str, Any]] = field(default_factory=list)
    subscribed: list[dict[str, Any]] = field(default_factory=list)
    marks: list[int] = field(default_factory=list)  # len(events) when each ``subscribed`` arrived
    servers: list[str] = field(default_factory=list)  # the URL each ``subscribed`` came from
    closes: list[int | None] = field(default_factory=list)
    latencies: list[tuple[int, float]] = field(default_factory=list)  # (seq, seconds since sent_at)
    epoch: str | None = None
    seq: int = 0
    resume: bool = True
    _ws: ClientConnection | None = None
    _task: asyncio.Task[None] | None = None
    _url_index: int = 0

    async def start(self) -> Subscriber:
        await self._connect()
        self._task = asyncio.create_task(self._run())
        return self

    async def _connect(self) -> None:
        url = self.urls[self._url_index % len(self.urls)]
        ws = await ws_connect(url, self.token, max_queue=None)
        since = {"since": {"epoch": self.epoch, "seq": self.seq}} if self.epoch and self.resume else {}
        await ws_send(ws, {"type": "subscribe", "feed": self.feed, **since})
        while True:
            reply = await ws_recv(ws)
            if reply["type"] == "subscribed":
                break
            if reply["type"] == "error":
                await ws.close()
                raise ConnectionError(f"subscribe failed: {reply}")
        self.subscribed.append(reply)
        self.marks.append(len(self.events))
        self.servers.append(url)
        if self.epoch is None or not reply["recovered"]:
            self.epoch, self.seq = reply["epoch"], reply["seq"]
        self._ws = ws

    async def _run(self) -> None:
        while True:
            ws = self._ws
            assert ws is not None
            try:
                async for raw in ws:
                    self._record(orjson.loads(raw))
            except websockets.ConnectionClosed:
                pass
            self.closes.append(ws.close_code)
            if not self.resume:
                return
            deadline = time.monotonic() + 15
            while True:
                self._url_index += 1
                try:
                    await self._connect()
                    break
                except (OSError, TimeoutError, ConnectionError, websockets.InvalidHandshake):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)

    def _record(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "activity":
            self.events.append(message)
            self.seq = message["seq"]
            sent = message["activity"].get("sent_at")
            if isinstance(sent, float):
                self.latencies.append((message["seq"], time.time() - sent))
        elif kind == "reset":
            self.resets.append(message)
            self.epoch, self.seq = message["epoch"], 0

    def replayed(self, n: int = -1) -> int:
        """How many events the ``n``-th subscribe replayed (seq up to the reply's seq)."""
        start, upto = self.marks[n], self.subscribed[n]["seq"]
        return sum(1 for e in self.events[start:] if e["seq"] <= upto)

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]

    async def wait_for_seq(self, seq: int, timeout: float) -> None:
        """Wait until an event with ``seq`` (or later) arrived."""
        deadline = time.monotonic() + timeout
        while not self.events or self.events[-1]["seq"] < seq:
            if self._task is not None and self._task.done():
                self._task.result()
                raise AssertionError(f"subscriber ended at seq {self.seq}, wanted {seq}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"subscriber at seq {self.seq} after {timeout}s, wanted {seq}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self.resume = False
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def check_stream(sub: Subscriber, expected: Iterable[int]) -> None:
    """Every expected seq exactly once, in order — or a ``reset`` was received."""
    seqs = sub.seqs
    assert seqs == sorted(set(seqs)), f"out of order or duplicated: {_first_disorder(seqs)}"
    if not sub.resets:
        want = sorted(set(expected))
        missing = sorted(set(want) - set(seqs))
        assert not missing, f"silent gap: {len(missing)} missing, first {missing[:10]}"


def _first_disorder(seqs: list[int]) -> list[int]:
    for i in range(1, len(seqs)):
        if seqs[i] <= seqs[i - 1]:
            return seqs[max(0, i - 3) : i + 3]
    return []


async def post_until_acked(
    http: httpx.AsyncClient, feed: str, activities: list[dict[str, Any]], *, deadline: float
) -> tuple[list[int], int]:
    """POST a batch, retrying on 503 (honouring ``Retry-After`` loosely); (acked seqs, 503s seen)."""
    refused = 0
    while True:
        try:
            response = await http.post(f"/v1/feeds/{feed}/activities", json={"activities": activities})
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 201:
            return [a["seq"] for a in response.json()["activities"]], refused
        if response is not None:
            assert response.status_code == 503, response.text
            assert "retry-after" in response.headers
        refused += 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"writes still refused after {refused} tries")
        await asyncio.sleep(0.1)


async def metric(http: httpx.AsyncClient, name: str) -> float:
    """The value of one unlabelled metric from ``/metrics`` (0 when absent)."""
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
