"""Notification feeds push their *group* counts live (SPEC §12: "counts and group changes are pushed
live"): after a write opens, re-opens or empties a group, and after group marks (native API and
the GetStream dialect), every subscriber gets the `notifications` frame with `groups`; feeds that
are not group-typed keep the activity-level frame, pushed on marks only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import RunningServer, nothing_more, recv, subscribe
from getstream_support import GETSTREAM
from test_getstream_python import Client

pytestmark = pytest.mark.timeout(120)

#: `notifications:<sub>` is made flat here (it is a notification feed group by default), to check
#: the activity-level frame where feeds are not group-typed; `alerts` groups by verb alone (no day
#: split), `notification` is GetStream's default notification group.
GROUPS = {
    "notifications": {"type": "flat"},
    "alerts": {"type": "notification", "aggregation_format": "{{ verb }}"},
    "notification": {"type": "notification", "aggregation_format": "{{ verb }}"},
    "aggregated": {"type": "aggregated"},
}


@pytest.fixture
async def srv(server_factory: Any) -> RunningServer:
    server: RunningServer = await server_factory(feed_groups=GROUPS, getstream=GETSTREAM)
    return server


async def counts(ws: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The next `notifications` frame (activity frames before it are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await recv(ws, timeout)
            if frame["type"] == "notifications":
                return frame


def pair(frame: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((activity unseen, unread), (group unseen, unread)) of a counts frame."""
    return (frame["unseen"], frame["unread"]), (frame["groups"]["unseen"], frame["groups"]["unread"])


async def test_group_counts_follow_writes_and_marks(srv: RunningServer) -> None:
    """Every subscriber (the owner and a watching admin) gets the group counts after a post that
    opens a group, one that re-opens a seen group (one group more, however many activities), a
    delete that empties a group, and marks by ids and all; they agree with the group read."""
    feed = "alerts:u-1"
    admin = srv.http(srv.token("root", admin=True))
    owner = srv.http(srv.token("u-1", {"alerts:u-1": ["read", "write"]}))
    subscribers = [await srv.ws(srv.token("u-1", {"alerts:u-1": ["read"]})), await srv.ws(srv.token("w", admin=True))]
    for ws in subscribers:
        await subscribe(ws, feed)

    async def post(verb: str) -> str:
        r = await admin.post(f"/v1/feeds/{feed}/activities", json={"verb": verb, "object": "o"})
        assert r.status_code == 201, r.text
        activity_id: str = r.json()["activities"][0]["id"]
        return activity_id

    async def everyone() -> tuple[tuple[int, int], tuple[int, int]]:
        got = {pair(await counts(ws)) for ws in subscribers}
        assert len(got) == 1, got
        return got.pop()

    await post("like")
    assert await everyone() == ((1, 1), (1, 1))
    follow = await post("follow")  # a new group
    assert await everyone() == ((2, 2), (2, 2))
    await post("like")  # joins an unseen group: the groups' counts stay
    assert await everyone() == ((3, 3), (2, 2))
    r = await owner.post(f"/v1/feeds/{feed}/groups/seen", json={"all": True})
    assert r.json() == {"unseen": 0, "unread": 2}
    assert await everyone() == ((0, 3), (0, 2))
    await post("like")  # re-opens the seen group: one unseen group, not one per activity
    assert await everyone() == ((1, 4), (1, 2))
    await post("like")
    assert await everyone() == ((2, 5), (1, 2))
    page = (await admin.get(f"/v1/feeds/{feed}/groups")).json()
    assert (page["unseen"], page["unread"]) == (1, 2)
    like = next(g["id"] for g in page["results"] if g["verb"] == "like")
    assert [(g["verb"], g["is_seen"]) for g in page["results"]] == [("like", False), ("follow", True)]
    r = await owner.post(f"/v1/feeds/{feed}/groups/read", json={"ids": [like]})
    assert r.json() == {"unseen": 0, "unread": 1}
    assert await everyone() == ((0, 1), (0, 1))
    await admin.delete(f"/v1/feeds/{feed}/activities/{follow}")  # empties the unread follow group
    assert await everyone() == ((0, 0), (0, 0))
    # marks on read (GET …/groups?mark_seen=…) push too
    await post("share")
    assert await everyone() == ((1, 1), (1, 1))
    page = (await admin.get(f"/v1/feeds/{feed}/groups", params={"mark_seen": "true"})).json()
    assert (page["unseen"], page["unread"]) == (1, 1)  # the read's counts are those before its marks
    assert await everyone() == ((0, 1), (0, 1))
    for ws in subscribers:
        await nothing_more(ws)


async def test_getstream_dialect_writes_and_marks_push_group_counts(srv: RunningServer) -> None:
    """Through the GetStream API (stream-python): add_activities, then a read with mark_seen /
    mark_read, push the group counts to a native subscriber of the notification feed."""
    c = Client(srv, "sync")
    notes = c.raw.feed("notification", "gs-1")
    ws = await srv.ws(srv.token("root", admin=True))
    await subscribe(ws, "notification:gs-1")
    await c(notes.add_activities, [{"actor": "a", "verb": v, "object": "x"} for v in ("follow", "like", "like")])
    frame = await counts(ws)
    while pair(frame)[0] != (3, 3):  # the three may be filed by one fold or by several
        frame = await counts(ws)
    assert pair(frame) == ((3, 3), (2, 2))
    read = await c(notes.get, mark_seen=True)
    assert (read["unseen"], read["unread"]) == (2, 2)
    assert pair(await counts(ws)) == ((0, 3), (0, 2))
    like = next(g["id"] for g in read["results"] if g["verb"] == "like")
    await c(notes.get, mark_read=[like])
    assert pair(await counts(ws)) == ((0, 1), (0, 1))
    await c(notes.add_activity, {"actor": "b", "verb": "like", "object": "y"})  # re-opens `like`
    assert pair(await counts(ws)) == ((1, 2), (1, 2))
    await nothing_more(ws)


async def test_feeds_that_are_not_group_typed_keep_the_activity_counts_frame(srv: RunningServer) -> None:
    """`notifications:<sub>` without a notification feed group: writes push no counts, marks push
    the activity-level frame (no `groups`); an aggregated feed pushes no counts either."""
    ws = await srv.ws(srv.token("u-7"))
    await subscribe(ws, "notifications:u-7")
    admin = srv.http(srv.token("root", admin=True))
    note = {"verb": "v", "object": "o", "to": ["notifications:u-7"]}
    await admin.post("/v1/feeds/booking:1/activities", json=note)
    assert (await recv(ws))["event"] == "created"
    await nothing_more(ws, 0.5)
    r = await srv.http(srv.token("u-7")).post("/v1/notifications/seen", json={"all": True})
    assert r.json() == {"unseen": 0, "unread": 1}
    assert await recv(ws) == {"type": "notifications", "feed": "notifications:u-7", "unseen": 0, "unread": 1}
    agg = await srv.ws(srv.token("root", admin=True))
    await subscribe(agg, "aggregated:1")
    await admin.post("/v1/feeds/aggregated:1/activities", json={"verb": "v", "object": "o"})
    assert (await recv(agg))["event"] == "created"
    await nothing_more(agg, 0.5)


async def test_a_failing_fold_is_logged_and_the_next_write_pushes(
    srv: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """When the background fold fails (here: the groups' state key holds a wrong type, so Redis
    refuses), the write still succeeds, the failure is logged, and once the state is readable
    again the next write pushes the counts."""
    feed = "alerts:u-2"
    admin = srv.http(srv.token("root", admin=True))
    ws = await srv.ws(srv.token("root", admin=True))
    await subscribe(ws, feed)
    meta = srv.app.keys.aggregation(feed)[0]
    await asyncio.wait_for(srv.app.pipeline.command(meta, "SET", meta, "not a hash"), 5)
    failed = srv.app.group_counts.failed
    r = await admin.post(f"/v1/feeds/{feed}/activities", json={"verb": "like", "object": "o"})
    assert r.status_code == 201
    assert (await recv(ws))["event"] == "created"
    async with asyncio.timeout(10):
        while srv.app.group_counts.failed == failed:
            await asyncio.sleep(0.05)
    assert any("could not push group counts" in m for m in caplog.messages)
    await nothing_more(ws, 0.3)
    await asyncio.wait_for(srv.app.pipeline.command(meta, "DEL", meta), 5)
    await admin.post(f"/v1/feeds/{feed}/activities", json={"verb": "follow", "object": "o"})
    assert pair(await counts(ws)) == ((2, 2), (2, 2))


async def test_follow_copies_push_the_group_counts(srv: RunningServer) -> None:
    """A notification feed following a feed gets its copies through the fan-out; each copy that
    opens a group pushes the counts like a direct write."""
    admin = srv.http(srv.token("root", admin=True))
    r = await admin.post("/v1/feeds/alerts:u-3/follows", json={"target": "user:star", "activity_copy_limit": 0})
    assert r.status_code == 201, r.text
    ws = await srv.ws(srv.token("root", admin=True))
    await subscribe(ws, "alerts:u-3")
    await admin.post("/v1/feeds/user:star/activities", json={"verb": "post", "object": "o:1"})
    assert pair(await counts(ws)) == ((1, 1), (1, 1))
    await admin.post("/v1/feeds/user:star/activities", json={"verb": "like", "object": "o:1"})
    assert pair(await counts(ws)) == ((2, 2), (2, 2))
