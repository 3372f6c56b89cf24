"""Redis Sentinel (SPEC §10): the master found through the Sentinels, followed through failovers.

A group of its own (1 master, 1 replica, 3 Sentinels, Valkey from the wheel). Subscribers watch
feeds over WebSocket while writers post; Sentinel then fails the master over (gracefully, then by
SIGKILL). Writes must answer 201 or 503 only, every subscriber must get every acknowledged change
in order (or a ``reset``), and the same server must work afterwards without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from conftest import RunningServer, make_settings, start_server
from faults import Subscriber

from server.devcluster import LocalSentinel

RIGHTS = {"room:*": ["read", "write", "member"]}
FEEDS = ["room:s1", "room:s2", "room:s3"]


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinel]:
    """A Sentinel group of this module's own (its tests fail the master over)."""
    with LocalSentinel(tmp_path_factory.mktemp("sentinel")) as local:
        yield local


@contextlib.asynccontextmanager
async def sentinel_server(group: LocalSentinel, **redis: Any) -> AsyncIterator[RunningServer]:
    """A server that knows only the Sentinels' addresses and the master's name."""
    settings = make_settings(
        "",
        f"s{uuid.uuid4().hex[:8]}:",
        redis={"url": "", "sentinels": group.sentinel_addrs, "sentinel_master": group.name, **redis},
    )
    srv = await start_server(settings)
    try:
        yield srv
    finally:
        await srv.stop()


class Load:
    """One writer per feed (recording acknowledged seqs) and subscribers on each feed."""

    def __init__(self, srv: RunningServer, token: str) -> None:
        self.http = srv.http(token)
        self.subs = {feed: [Subscriber([srv.ws_url], token, feed) for _ in range(3)] for feed in FEEDS}
        self.acked: dict[str, list[int]] = {feed: [] for feed in FEEDS}
        self.statuses: dict[int, int] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await asyncio.gather(*(sub.start() for subs in self.subs.values() for sub in subs))
        self._tasks = [asyncio.create_task(self._write(feed)) for feed in FEEDS]

    async def _write(self, feed: str) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                r = await self.http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": f"o:{i}"})
            except httpx.TimeoutException:
                self.statuses[-1] = self.statuses.get(-1, 0) + 1
                continue
            self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
            if r.status_code == 201:
                self.acked[feed].append(r.json()["activities"][0]["seq"])
            else:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 15)

    async def check(self, timeout: float = 15) -> None:
        """201/503 only; every subscriber got every acknowledged seq in order, or a reset."""
        assert set(self.statuses) <= {201, 503}, self.statuses
        for feed, subs in self.subs.items():
            last = max(self.acked[feed])
            for sub in subs:
                deadline = time.monotonic() + timeout
                while not sub.resets and (not sub.events or sub.events[-1]["seq"] < last):
                    assert time.monotonic() < deadline, f"{feed}: subscriber at {sub.seq}, wanted {last}"
                    await asyncio.sleep(0.05)
                seqs = sub.seqs
                if not sub.resets:
                    assert seqs == sorted(set(seqs)), f"{feed}: out of order or duplicated"
                    missing = sorted(set(self.acked[feed]) - set(seqs))
                    assert not missing, f"{feed}: acknowledged changes never delivered: {missing[:10]}"

    async def close(self) -> None:
        await asyncio.gather(*(sub.close() for subs in self.subs.values() for sub in subs))


async def writable(http: httpx.AsyncClient, timeout: float = 20) -> float:
    """Seconds until a write to every feed answers 201."""
    started = time.monotonic()
    for feed in FEEDS:
        while True:
            r = await http.post(f"/v1/feeds/{feed}/activities", json={"verb": "v", "object": "probe"})
            if r.status_code == 201:
                break
            assert r.status_code == 503, r.text
            assert time.monotonic() - started < timeout, f"{feed} not writable after {timeout}s: {r.text}"
            await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("fault", ["failover", "sigkill"])
async def test_sentinel_failover_with_subscribers_and_writers(group, fault):
    """SENTINEL FAILOVER / SIGKILL of the master under load: 201 or 503 only, every acknowledged
    change delivered in order (or a reset), writes and live events work afterwards."""
    async with sentinel_server(group) as srv:
        assert srv.app.topology == "sentinel"
        load = Load(srv, srv.token("w", RIGHTS))
        await load.start()
        try:
            await asyncio.sleep(0.5)
            old = group.master()
            started = time.monotonic()
            if fault == "failover":
                new = await asyncio.to_thread(group.failover)
            else:
                group.kill(old, signal.SIGKILL)
                new = await asyncio.to_thread(group.wait_new_master, old, 30)
            switched = time.monotonic() - started
            back = await writable(load.http)
            await asyncio.sleep(0.5)
            await load.stop()
            await load.check()
            assert new is not old
            # Afterwards: a fresh subscriber gets a fresh write live, through the new master.
            late = await Subscriber([srv.ws_url], srv.token("w", RIGHTS), FEEDS[0]).start()
            try:
                r = await load.http.post(f"/v1/feeds/{FEEDS[0]}/activities", json={"verb": "v", "object": "after"})
                assert r.status_code == 201, r.text
                await late.wait_for_seq(r.json()["activities"][0]["seq"], 10)
            finally:
                await late.close()
            print(
                f"\nSentinel {fault}: new master after {switched:.2f}s, all feeds writable {back:.2f}s later; "
                f"writes {load.statuses}"
            )
        finally:
            await load.close()
            # (after the SIGKILL case, the last test of the module, the group runs without a replica)
