"""SPEC §12 on a Redis/Valkey cluster (3 masters): follows with their fan-out, reactions, users
and group reads, where the feeds, the job stream and the lookups live on different shards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.devcluster import LocalCluster

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Three masters, no replicas."""
    c = LocalCluster(tmp_path / "cluster", masters=3, replicas=0).start()
    try:
        yield c
    finally:
        c.stop()


async def test_follows_reactions_and_groups_on_a_cluster(server_factory: Any, cluster: LocalCluster) -> None:
    """Fan-out to followers on every shard converges; reactions, users and groups work across slots."""
    srv = await server_factory(redis={"url": cluster.url, "cluster": "on"})
    admin = srv.http(srv.token("root", admin=True))
    pairs = [{"source": f"timeline:c{i}", "target": "user:star"} for i in range(60)]
    assert (await admin.post("/v1/follows", json={"follows": pairs})).status_code == 201
    items = [{"verb": "post", "object": f"o:{i}", "audience": ["everyone"]} for i in range(5)]
    posted = (await admin.post("/v1/feeds/user:star/activities", json={"activities": items})).json()["activities"]
    await admin.delete(f"/v1/feeds/user:star/activities/{posted[0]['id']}")

    async def converged() -> bool:
        for i in range(0, 60, 7):
            r = await admin.get(f"/v1/feeds/timeline:c{i}/activities")
            if len(r.json()["results"]) != 4:
                return False
        return True

    async with asyncio.timeout(30):
        while not await converged():
            await asyncio.sleep(0.1)
    like = await admin.post(
        "/v1/reactions", json={"kind": "like", "activity_id": posted[1]["id"], "feed": "timeline:c3"}
    )
    assert like.status_code == 201, like.text
    assert (await admin.get(f"/v1/reactions/{like.json()['id']}")).status_code == 200
    enriched = await admin.get("/v1/feeds/timeline:c3/activities", params={"with_reaction_counts": "true"})
    counts = {a["id"]: a["reaction_counts"] for a in enriched.json()["results"]}
    assert counts[posted[1]["id"]] == {"like": 1}
    assert (await admin.post("/v1/users", json={"id": "u1", "data": {"n": 1}})).status_code == 201
    await admin.post("/v1/feeds/aggregated:x/activities", json={"activities": items})
    groups = (await admin.get("/v1/feeds/aggregated:x/groups")).json()["results"]
    assert len(groups) == 1 and groups[0]["activity_count"] == 5
    stats = (await admin.get("/v1/feeds/user:star/follow_stats")).json()["results"]
    assert stats["followers"]["count"] == 60
