"""The WebSocket load-generator process.

It runs in its own process (so it never shares an event loop -- or a GIL -- with the server under
test) and is driven by the harness with one JSON object per line on stdin; it answers each with one
JSON line on stdout. Commands:

``connect_subs``  open ``count`` subscribers (indices ``start``…) to ``feed`` (a format string,
                  ``{i}`` is the subscriber index) using ``dialect``; bounded concurrency.
``connect_pub``   open the publisher connection.
``fanout``        open-loop publishing at ``rate`` messages/s for ``duration`` s to ``feeds``
                  (round robin), then wait up to ``drain`` s for the expected deliveries; returns
                  loss and the latency distribution, plus CPU seconds used by the processes listed
                  in ``cpu`` (read from /proc/<pid>/stat) during the step.
``ingest``        closed-loop pipelined publishing on one connection with ``window`` un-acked
                  messages in flight; returns acks/s.
``settle``        wait until stragglers of an overloaded step stop arriving.
``status``        how many connections are open / closed (by close code).
``close``         close everything and exit.

Latency is measured without coordinated omission: the publisher follows a fixed timetable
(message *i* is due at ``t0 + i/rate``) and never waits for deliveries or acks; writes never
block (asyncio transports buffer), so the ``bench_t`` stamp taken right before each write is the
moment the message entered the system. How late the publisher itself was against its timetable is
reported separately as ``send_lag_*`` so that an overloaded load generator is visible instead of
silently lowering the offered rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from array import array
from collections import Counter
from typing import Any

from . import ws
from .dialects import Dialect, make_dialect
from .procs import cpu_ticks, host_busy_ticks, raise_nofile

BENCH_RE = re.compile(rb'"bench_t"\s*:\s*(\d+)')
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def percentiles(values: array, qs: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)) -> dict[str, float]:
    """Nearest-rank percentiles of nanosecond samples, in milliseconds."""
    if not values:
        return {f"p{_qname(q)}_ms": None for q in qs} | {"max_ms": None}  # type: ignore[dict-item]
    s = sorted(values)
    n = len(s)
    out = {f"p{_qname(q)}_ms": s[min(n - 1, max(0, int(q * n + 0.5) - 1))] / 1e6 for q in qs}
    out["max_ms"] = s[-1] / 1e6
    return out


def latency_trend(lat: array, sent: array, t_begin: int, t_end: int) -> dict[str, float | None]:
    """Median latency of messages sent in the first vs the last third of the timetable.

    A server that keeps up has a flat trend; one that does not builds a queue, so messages sent
    later wait longer. That growth is the signature of an unsustainable rate, whatever the
    absolute latency of one broadcast is.
    """
    third = (t_end - t_begin) / 3
    lo, hi = t_begin + third, t_end - third
    first = sorted(x for x, t in zip(lat, sent, strict=True) if t < lo)
    last = sorted(x for x, t in zip(lat, sent, strict=True) if t >= hi)
    m1 = first[len(first) // 2] / 1e6 if first else None
    m3 = last[len(last) // 2] / 1e6 if last else None
    return {"p50_first_third_ms": m1, "p50_last_third_ms": m3}


def _qname(q: float) -> str:
    return {0.5: "50", 0.9: "90", 0.99: "99", 0.999: "999"}.get(q, str(q))


class Step:
    """Counters of one measurement step; subscribers append latencies here."""

    def __init__(self, t_start: int) -> None:
        self.t_start = t_start
        self.lat = array("q")  # latency of each delivery, ns
        self.sent = array("q")  # bench_t of the same delivery (to see whether latency grows)
        self.stale = 0  # benchmark messages published before this step started (late stragglers)


class Loadgen:
    def __init__(self) -> None:
        self.subs: list[ws.WSConnection] = []
        self.sub_dialect: Dialect | None = None
        self.pub: ws.WSConnection | None = None
        self.pub_dialect: Dialect | None = None
        self.step: Step | None = None
        self.replies: Counter[str] = Counter()
        self.first_errors: list[str] = []
        self._ingest_hook = None
        self.last_rx = 0.0  # when the last (stale) benchmark message arrived between steps

    # -- handlers --------------------------------------------------------------------------------

    def _idle_handler(self, dialect: Dialect):
        """Between steps: drop benchmark messages (noting when the last one came), keep the
        protocol alive."""
        search = BENCH_RE.search
        keepalive = dialect.keepalive
        clock = time.monotonic

        def on_message(conn: ws.WSConnection, payload: bytes) -> None:
            if search(payload) is None:
                keepalive(conn, payload)
            else:
                self.last_rx = clock()

        return on_message

    def _step_handler(self, dialect: Dialect, step: Step):
        """The hot path: find the timestamp, record now - bench_t. No JSON parsing."""
        search = BENCH_RE.search
        keepalive = dialect.keepalive
        append = step.lat.append
        append_sent = step.sent.append
        now = time.monotonic_ns
        t0 = step.t_start

        def on_message(conn: ws.WSConnection, payload: bytes) -> None:
            m = search(payload)
            if m is None:
                keepalive(conn, payload)
                return
            t = int(m.group(1))
            if t < t0:
                step.stale += 1
            else:
                append(now() - t)
                append_sent(t)

        return on_message

    def _pub_handler(self, dialect: Dialect):
        replies = self.replies
        errors = self.first_errors

        def on_message(conn: ws.WSConnection, payload: bytes) -> None:
            kind = dialect.reply_kind(payload)
            if kind == "ping":
                dialect.keepalive(conn, payload)
                return
            replies[kind or "other"] += 1
            if kind == "error" and len(errors) < 5:
                errors.append(payload[:400].decode(errors="replace"))
            hook = self._ingest_hook
            if hook is not None and kind == "ack":
                hook()

        return on_message

    # -- commands --------------------------------------------------------------------------------

    async def connect_subs(self, cmd: dict[str, Any]) -> dict[str, Any]:
        dialect = make_dialect(cmd["dialect"])
        self.sub_dialect = dialect
        host, port = cmd.get("host", "127.0.0.1"), int(cmd["port"])
        feed_fmt: str = cmd["feed"]
        start, count = int(cmd.get("start", 0)), int(cmd["count"])
        timeout = float(cmd.get("timeout", 15.0))
        sem = asyncio.Semaphore(int(cmd.get("concurrency", 100)))
        idle = self._idle_handler(dialect)
        errors: list[str] = []
        t0 = time.monotonic()

        async def one(i: int) -> ws.WSConnection | None:
            feed = feed_fmt.format(i=i)
            for attempt in range(3):  # a connect burst can overflow a listen backlog: retry
                async with sem:
                    conn = None
                    try:
                        conn = await ws.connect(host, port, dialect.sub_path(feed), dialect.sub_headers(i), timeout)
                        await dialect.setup_sub(conn, feed, i, timeout)
                        conn.tag = i
                        conn.inbox.clear()
                        conn.on_message = idle
                        return conn
                    except Exception as exc:  # noqa: BLE001 -- reported to the harness
                        if conn is not None:
                            conn.abort()
                        if attempt == 2 and len(errors) < 5:
                            errors.append(f"sub {i}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.2 * (attempt + 1))
            return None

        results = await asyncio.gather(*(one(i) for i in range(start, start + count)))
        ok = [c for c in results if c is not None]
        self.subs.extend(ok)
        return {
            "connected": len(ok),
            "failed": count - len(ok),
            "total": len(self.subs),
            "secs": round(time.monotonic() - t0, 3),
            "errors": errors,
        }

    async def connect_pub(self, cmd: dict[str, Any]) -> dict[str, Any]:
        dialect = make_dialect(cmd["dialect"])
        self.pub_dialect = dialect
        host, port = cmd.get("host", "127.0.0.1"), int(cmd["port"])
        timeout = float(cmd.get("timeout", 15.0))
        if self.pub is not None:
            self.pub.close()
        conn = await ws.connect(host, port, dialect.pub_path(), dialect.pub_headers(), timeout)
        await dialect.setup_pub(conn, timeout)
        conn.inbox.clear()
        conn.on_message = self._pub_handler(dialect)
        self.pub = conn
        return {"ok": True}

    async def fanout(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """One open-loop step. ``rate`` is publish messages/s (the harness converts deliveries/s)."""
        assert self.pub is not None and self.pub_dialect is not None
        pub, dialect = self.pub, self.pub_dialect
        rate = float(cmd["rate"])
        duration = float(cmd["duration"])
        feeds: list[str] = cmd.get("feeds") or [
            cmd["feed_fmt"].format(i=i)
            for i in range(int(cmd.get("feed_start", 0)), int(cmd.get("feed_start", 0)) + int(cmd["feed_count"]))
        ]
        audience = json.dumps(cmd.get("audience", ["members"]), separators=(",", ":"))
        expected_per_pub = int(cmd["expected_per_pub"])
        drain = float(cmd.get("drain", 2.0))
        cpu_pids: dict[str, list[int]] = cmd.get("cpu", {})
        sub_dialect = self.sub_dialect or dialect

        # Pre-split the frame template so the send loop only formats two integers.
        total = max(1, round(rate * duration))
        interval = 1e9 / rate
        n_feeds = len(feeds)
        frame = dialect.publish_frame
        send = pub.send
        lag = array("q")
        self.replies.clear()
        self.first_errors.clear()

        step = Step(time.monotonic_ns())
        self.step = step
        handler = self._step_handler(sub_dialect, step)
        for c in self.subs:
            c.on_message = handler

        cpu0 = {k: cpu_ticks(v) for k, v in cpu_pids.items()}
        host0 = host_busy_ticks()
        own0 = time.process_time()
        wall0 = time.monotonic()
        t_sched0 = time.monotonic_ns() + 2_000_000
        now_ns = time.monotonic_ns
        i = 0
        while i < total:
            due = t_sched0 + int(i * interval)
            now = now_ns()
            if due > now:
                # Event-loop timers have 1 ms resolution: a shorter sleep returns at once and the
                # loop would spin, stealing CPU from the server on a 2-core host. Sleep at least
                # 1 ms and then send everything that fell due (bursts stay on the timetable).
                await asyncio.sleep(max(0.001, (due - now) / 1e9))
                continue
            # Catch up with everything that is due: open loop, never skip a scheduled message.
            while i < total:
                due = t_sched0 + int(i * interval)
                now = now_ns()
                if due > now:
                    break
                send(frame(feeds[i % n_feeds], i, now, audience))
                lag.append(now - due)
                i += 1
        send_end = time.monotonic()
        expected = total * expected_per_pub
        lat = step.lat
        while len(lat) < expected and time.monotonic() - send_end < drain:
            await asyncio.sleep(0.005)
        wall = time.monotonic() - wall0
        cpu1 = {k: cpu_ticks(v) for k, v in cpu_pids.items()}
        own = time.process_time() - own0
        host1 = host_busy_ticks()

        idle = self._idle_handler(sub_dialect)
        for c in self.subs:
            c.on_message = idle
        self.step = None
        received = len(lat)
        closed = Counter(c.close_code for c in self.subs if c.close_code is not None)
        res: dict[str, Any] = {
            "offered_pub_per_s": rate,
            "offered_deliveries_per_s": rate * expected_per_pub,
            "sent": total,
            "expected": expected,
            "received": received,
            "loss": max(0, expected - received),
            "extra": max(0, received - expected),
            "stale": step.stale,
            "send_secs": round(send_end - wall0, 4),
            "wall_secs": round(wall, 4),
            # deliveries per second of the publishing timetable (total / rate seconds long)
            "achieved_deliveries_per_s": received / (total / rate),
            "loadgen_cpu_util": round(own / max(1e-9, wall), 3),
            # busy CPUs of the whole machine (all processes, incl. server, Redis and ourselves)
            "host_busy_cores": round((host1[0] - host0[0]) / max(1, host1[1] - host0[1]) * NCPU, 3),
            "cpu_secs": {k: (cpu1[k] - cpu0[k]) / CLK_TCK for k in cpu_pids},
            "replies": dict(self.replies),
            "errors": list(self.first_errors),
            "closed": {str(k): v for k, v in closed.items()},
            "open_subs": sum(1 for c in self.subs if c.close_code is None),
        }
        res.update(percentiles(lat))
        res.update(latency_trend(lat, step.sent, t_sched0, t_sched0 + int(total * interval)))
        lag_p = percentiles(lag, (0.99,))
        res["send_lag_p99_ms"] = lag_p["p99_ms"]
        res["send_lag_max_ms"] = lag_p["max_ms"]
        return res

    async def ingest(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Pipelined publishing on one connection: keep ``window`` messages un-acked."""
        assert self.pub is not None and self.pub_dialect is not None
        pub, dialect = self.pub, self.pub_dialect
        duration = float(cmd["duration"])
        window = int(cmd.get("window", 100))
        feed = cmd.get("feed", "bench:ingest")
        audience = json.dumps(cmd.get("audience", ["members"]), separators=(",", ":"))
        cpu_pids: dict[str, list[int]] = cmd.get("cpu", {})
        frame = dialect.publish_frame
        self.replies.clear()
        self.first_errors.clear()
        state = {"sent": 0, "acked": 0, "stop": False}
        now_ns = time.monotonic_ns

        def send_one() -> None:
            state["sent"] += 1
            pub.send(frame(feed, state["sent"], now_ns(), audience))

        def on_ack() -> None:
            state["acked"] += 1
            if not state["stop"]:
                send_one()

        cpu0 = {k: cpu_ticks(v) for k, v in cpu_pids.items()}
        self._ingest_hook = on_ack
        t0 = time.monotonic()
        for _ in range(window):
            send_one()
        await asyncio.sleep(duration)
        acked_at_stop = state["acked"]
        elapsed = time.monotonic() - t0
        state["stop"] = True
        cpu1 = {k: cpu_ticks(v) for k, v in cpu_pids.items()}
        # Let the in-flight window settle so the next step starts clean.
        deadline = time.monotonic() + 5.0
        while state["acked"] + self.replies.get("error", 0) < state["sent"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._ingest_hook = None
        return {
            "acks": acked_at_stop,
            "secs": round(elapsed, 3),
            "acks_per_s": acked_at_stop / elapsed,
            "unacked_after_drain": state["sent"] - state["acked"],
            "replies": dict(self.replies),
            "errors": list(self.first_errors),
            "cpu_secs": {k: (cpu1[k] - cpu0[k]) / CLK_TCK for k in cpu_pids},
        }

    async def settle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Wait until no benchmark message has arrived for ``quiet`` s (at most ``timeout`` s).

        After an overloaded step the server may still be working off its backlog; starting the
        next step then would charge that backlog to it.
        """
        quiet, timeout = float(cmd.get("quiet", 0.5)), float(cmd.get("timeout", 15.0))
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            idle_for = time.monotonic() - max(self.last_rx, t0 - quiet)
            if idle_for >= quiet:
                break
            await asyncio.sleep(quiet - idle_for)
        return {"secs": round(time.monotonic() - t0, 3)}

    async def status(self, cmd: dict[str, Any]) -> dict[str, Any]:
        closed = Counter(c.close_code for c in self.subs if c.close_code is not None)
        return {
            "subs": len(self.subs),
            "open": sum(1 for c in self.subs if c.close_code is None),
            "closed": {str(k): v for k, v in closed.items()},
            "pub_open": self.pub is not None and self.pub.close_code is None,
        }

    async def close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        conns = [*self.subs, *([self.pub] if self.pub else [])]
        for c in conns:
            c.close()
        # Give polite closes a moment, then drop whatever is left.
        deadline = time.monotonic() + float(cmd.get("timeout", 2.0))
        while any(c.close_code is None for c in conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in conns:
            c.abort()
        self.subs.clear()
        self.pub = None
        return {"ok": True}


async def serve() -> None:
    """Read commands from stdin, run them one at a time, answer on stdout."""
    lg = Loadgen()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        name = cmd.get("cmd")
        try:
            handler = getattr(lg, name)
            result = await handler(cmd)
            result["ok"] = result.get("ok", True)
        except Exception as exc:  # noqa: BLE001 -- the harness decides what a failure means
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(result) + "\n")
        out.flush()
        if name == "close":
            break


def main() -> None:
    raise_nofile()
    try:
        from uvloop import run
    except ImportError:  # the plain loop works, just slower
        from asyncio import run
    try:
        run(serve())
    except KeyboardInterrupt:
        pass
    # Leave without waiting for thousands of transports to be garbage collected.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
