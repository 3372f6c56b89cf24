"""A light closed-loop HTTP/1.1 load generator (its own process).

``python -m feedbench.httpload '<json spec>'`` prints one JSON result line. The spec:

``port``, ``host``         target (loopback only)
``conns``                  keep-alive connections (each has exactly one request in flight)
``requests``               list of ``{"method", "path", "headers": {…}, "body": str|null}``;
                           connections cycle through them
``warmup``, ``duration``   seconds; only responses completed inside the measured window count
``cpu``                    ``{"name": [pid, …]}`` -- CPU seconds of these processes during the
                           measured window are reported (``/proc/<pid>/stat``)

Why hand-rolled: a client like httpx spends more CPU per request than a fast server does, so it
would measure itself. This one writes pre-encoded request bytes and parses only the status line,
``Content-Length`` and chunked framing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from array import array
from collections import Counter
from typing import Any

from .procs import CLK_TCK, cpu_ticks, raise_nofile


def encode_request(host: str, port: int, req: dict[str, Any]) -> bytes:
    body = req.get("body")
    body_b = body.encode() if isinstance(body, str) else (body or b"")
    lines = [f"{req.get('method', 'GET')} {req['path']} HTTP/1.1", f"Host: {host}:{port}"]
    headers = dict(req.get("headers") or {})
    if body_b or req.get("method", "GET") in ("POST", "PUT", "PATCH"):
        headers.setdefault("Content-Type", "application/json")
        headers["Content-Length"] = str(len(body_b))
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body_b


class Gen:
    """Shared state of all connections."""

    def __init__(self, requests: list[bytes]) -> None:
        self.requests = requests
        self.counting = False
        self.running = True
        self.done = 0
        self.statuses: Counter[int] = Counter()
        self.lat = array("q")
        self.errors: list[str] = []
        self.first_bad: list[str] = []
        self.inflight = 0


class HTTPConn(asyncio.Protocol):
    def __init__(self, gen: Gen, index: int) -> None:
        self.gen = gen
        self.i = index
        self.buf = b""
        self.t_sent = 0
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send_next()

    def send_next(self) -> None:
        gen = self.gen
        if not gen.running or self.transport is None or self.transport.is_closing():
            return
        req = gen.requests[self.i % len(gen.requests)]
        self.i += 1
        self.t_sent = time.monotonic_ns()
        gen.inflight += 1
        self.transport.write(req)

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        while True:
            n = self._complete_length()
            if n <= 0:
                return
            resp, self.buf = self.buf[:n], self.buf[n:]
            self._finished(resp)

    def _complete_length(self) -> int:
        """Length of the first complete response in ``buf``, or 0 if it is not complete yet."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return 0
        head = buf[:end].lower()
        start = end + 4
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            length = int(head[i + 17 : j if j >= 0 else len(head)])
            return start + length if len(buf) >= start + length else 0
        if b"\r\ntransfer-encoding: chunked" in head:
            pos = start
            while True:
                j = buf.find(b"\r\n", pos)
                if j < 0:
                    return 0
                size = int(buf[pos:j].split(b";")[0], 16)
                pos = j + 2 + size + 2
                if len(buf) < pos:
                    return 0
                if size == 0:
                    return pos
        return start  # no body (e.g. 204)

    def _finished(self, resp: bytes) -> None:
        gen = self.gen
        gen.inflight -= 1
        status = int(resp[9:12])
        if gen.counting:
            gen.done += 1
            gen.statuses[status] += 1
            gen.lat.append(time.monotonic_ns() - self.t_sent)
            if status >= 400 and len(gen.first_bad) < 3:
                gen.first_bad.append(resp[:600].decode(errors="replace"))
        if b"\r\nconnection: close" in resp[: resp.find(b"\r\n\r\n")].lower():
            self.transport.close()  # type: ignore[union-attr]
            return
        self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.gen.running and len(self.gen.errors) < 5:
            self.gen.errors.append(f"connection lost: {exc}")
        if not self.closed.done():
            self.closed.set_result(None)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec.get("host", "127.0.0.1"), int(spec["port"])
    gen = Gen([encode_request(host, port, r) for r in spec["requests"]])
    loop = asyncio.get_running_loop()
    conns: list[HTTPConn] = []
    n = int(spec.get("conns", 50))
    for k in range(n):
        _, c = await loop.create_connection(lambda k=k: HTTPConn(gen, k), host, port)
        conns.append(c)
    await asyncio.sleep(float(spec.get("warmup", 0.5)))
    cpu_pids: dict[str, list[int]] = spec.get("cpu", {})
    cpu0 = {k: cpu_ticks(v) for k, v in cpu_pids.items()}
    own0 = time.process_time()
    t0 = time.monotonic()
    gen.counting = True
    await asyncio.sleep(float(spec.get("duration", 3.0)))
    gen.counting = False
    secs = time.monotonic() - t0
    cpu1 = {k: cpu_ticks(v) for k, v in cpu_pids.items()}
    own = time.process_time() - own0
    gen.running = False
    deadline = time.monotonic() + 3.0
    while gen.inflight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    s = sorted(gen.lat)
    pct = (lambda q: s[min(len(s) - 1, int(q * len(s)))] / 1e6) if s else (lambda q: None)
    ok = sum(v for k, v in gen.statuses.items() if 200 <= k < 300)
    return {
        "requests": gen.done,
        "ok_requests": ok,
        "secs": round(secs, 3),
        "per_s": gen.done / secs,
        "ok_per_s": ok / secs,
        "statuses": {str(k): v for k, v in gen.statuses.items()},
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "client_cpu_util": round(own / secs, 3),
        "cpu_secs": {k: (cpu1[k] - cpu0[k]) / CLK_TCK for k in cpu_pids},
        "errors": gen.errors,
        "first_bad": gen.first_bad,
    }


def main() -> None:
    raise_nofile()
    spec = json.loads(sys.argv[1])
    try:
        from uvloop import run as runner
    except ImportError:
        from asyncio import run as runner
    result = runner(run(spec))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
