"""The GetStream id index (``server/dialects/getstream/index.py``): posts recorded in the same tick
share one script call, and every activity is then addressable the GetStream way."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
from conftest import RunningServer, redis_client
from getstream_support import GETSTREAM, GS_APP, GS_KEY, GS_SECRET

pytestmark = pytest.mark.timeout(60)

WRITER = {"user:ix*": ["admin"]}


@pytest.fixture
async def gs(server_factory: Any) -> RunningServer:
    """A server with the GetStream API on."""
    srv: RunningServer = await server_factory(getstream=GETSTREAM)
    return srv


def _index(gs: RunningServer) -> Any:
    """The app's ``ActivityIndex`` (its ``after_post`` hook)."""
    [index] = [h.__self__ for h in gs.app.service.after_post if h.__name__ == "record_bodies"]
    return index


async def _found(gs: RunningServer, ids: list[str]) -> set[str]:
    """The ids ``GET /api/v1.0/activities/?ids=`` finds (server-side token)."""
    token = jwt.encode({"resource": "*", "action": "*", "feed_id": "*"}, GS_SECRET, algorithm="HS256")
    http = gs.http(**{"Authorization": token, "stream-auth-type": "jwt"})
    r = await http.get("/api/v1.0/activities/", params={"ids": ",".join(ids), "api_key": GS_KEY})
    assert r.status_code == 200, r.text
    return {a["id"] for a in r.json()["results"]}


async def test_records_of_one_tick_share_one_script_call(gs: RunningServer) -> None:
    """Twenty posts' index entries recorded at the same time go to Redis in one script call, and
    every activity is found by id afterwards (the hashes were emptied first: only that call wrote)."""
    native = gs.http(gs.token("w", WRITER))
    bodies: list[tuple[str, bytes]] = []
    for i in range(20):
        feed = f"user:ix{i}"
        r = await native.post(f"/v1/feeds/{feed}/activities", json={"verb": "post", "object": f"o:{i}"})
        assert r.status_code == 201, r.text
        stored = await gs.app.store.get(feed, r.json()["activities"][0]["id"])
        assert stored is not None
        bodies.append((feed, stored))
    ids = [b.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode() for _, b in bodies]
    assert await _found(gs, ids) == set(ids)  # indexed by the after_post hook

    index = _index(gs)
    r = redis_client(gs.settings.redis.url)
    try:
        await asyncio.wait_for(r.delete(index.ids_key, index.fids_key), 5)
    finally:
        await r.aclose()
    assert await _found(gs, ids) == set()

    calls: list[int] = []
    real_eval = index._calls.eval

    async def counted(sha: str, keys: Any, args: Any) -> Any:
        if sha == index._record:
            calls.append(len(args) // 3)
        return await real_eval(sha, keys, args)

    index._calls.eval = counted
    try:
        await asyncio.wait_for(asyncio.gather(*(index.record_bodies(feed, [b]) for feed, b in bodies)), 10)
    finally:
        index._calls.eval = real_eval
    assert calls == [20]
    assert await _found(gs, ids) == set(ids)


async def test_an_activity_in_several_feeds_lists_each_once(gs: RunningServer) -> None:
    """Recording the same id for two feeds, twice, keeps both feeds, each once (the HSETNX fast
    path falls back to appending for a known id)."""
    index = _index(gs)
    entries = [("01JX0000000000000000000001", "user:ix-a", "f:1", "2026-01-01T00:00:00.000000")]
    await asyncio.wait_for(index.record(entries), 5)
    again = [(*entries[0][:1], "user:ix-b", *entries[0][2:])]
    await asyncio.wait_for(asyncio.gather(index.record(again), index.record(entries), index.record(again)), 5)
    assert await asyncio.wait_for(index.by_ids([entries[0][0]]), 5) == [["user:ix-a", "user:ix-b"]]
    pair = ("f:1", "2026-01-01T00:00:00.000000")
    assert await asyncio.wait_for(index.by_pairs([pair]), 5) == [["user:ix-a", "user:ix-b"]]
    assert GS_APP in index.ids_key
