"""SPEC §12 through the GetStream dialect with the official clients, unmodified: follows and
timelines, aggregated and notification feeds with marks, reactions with enriched reads, users and
collections (stream-python sync and async; the npm ``getstream`` client for follows)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import RunningServer, recv, subscribe
from getstream_support import GETSTREAM, JS_DIR, js_ready
from stream.exceptions import StreamApiException
from test_getstream_python import MODES, Client

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def gs(server_factory: Any) -> RunningServer:
    """A server with the GetStream API on."""
    srv: RunningServer = await server_factory(getstream=GETSTREAM)
    return srv


async def _until(check: Any, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.05)


@MODES
async def test_python_follow_timeline_lists_and_stats(gs: RunningServer, mode: str) -> None:
    """follow/unfollow, followers/following, follow_many/unfollow_many, follow_stats; the timeline
    gets the followed feed's activities with their origin, live to a native subscriber."""
    c = Client(gs, mode)
    user = c.raw.feed("user", f"star-{mode}")
    timeline = c.raw.feed("timeline", f"fan-{mode}")
    first = await c(user.add_activity, {"actor": "star", "verb": "post", "object": "o:1"})
    assert "duration" in await c(timeline.follow, "user", f"star-{mode}", activity_copy_limit=10)
    page = await c(timeline.get, limit=10)
    assert [(a["id"], a["origin"]) for a in page["results"]] == [(first["id"], f"user:star-{mode}")]
    ws = await gs.ws(gs.token("root", admin=True))
    await subscribe(ws, f"timeline:fan-{mode}")
    second = await c(user.add_activity, {"actor": "star", "verb": "post", "object": "o:2"})
    event = await recv(ws, 10)
    assert event["event"] == "created" and event["activity"]["id"] == second["id"]
    followers = await c(user.followers)
    assert [f["feed_id"] for f in followers["results"]] == [f"timeline:fan-{mode}"]
    following = await c(timeline.following)
    assert [f["target_id"] for f in following["results"]] == [f"user:star-{mode}"]
    pairs = [{"source": f"timeline:m{i}-{mode}", "target": f"user:star-{mode}"} for i in range(3)]
    await c(c.raw.follow_many, pairs, activity_copy_limit=0)
    stats = await c(c.raw.follow_stats, f"user:star-{mode}")
    assert stats["results"]["followers"]["count"] == 4
    await c(c.raw.unfollow_many, pairs)
    await c(timeline.unfollow, "user", f"star-{mode}")
    assert (await c(timeline.get))["results"] == []
    assert (await c(user.followers))["results"] == []


@MODES
async def test_python_aggregated_and_notification_feeds(gs: RunningServer, mode: str) -> None:
    """Aggregated reads return groups; notification reads carry unseen/unread and honour mark_seen/mark_read."""
    c = Client(gs, mode)
    agg = c.raw.feed("aggregated", f"a-{mode}")
    await c(agg.add_activities, [{"actor": f"u{i}", "verb": "like", "object": f"p:{i}"} for i in range(3)])
    groups = (await c(agg.get, limit=5))["results"]
    assert len(groups) == 1 and groups[0]["activity_count"] == 3 and groups[0]["actor_count"] == 3
    assert groups[0]["verb"] == "like" and len(groups[0]["activities"]) == 3
    notes = c.raw.feed("notification", f"n-{mode}")
    await c(notes.add_activities, [{"actor": "a", "verb": v, "object": "x"} for v in ("follow", "like")])
    read = await c(notes.get, mark_seen=True)
    assert read["unseen"] == 2 and read["unread"] == 2 and not read["results"][0]["is_seen"]
    again = await c(notes.get)
    assert again["unseen"] == 0 and all(g["is_seen"] for g in again["results"])
    first = again["results"][0]["id"]
    await c(notes.get, mark_read=[first])
    assert (await c(notes.get))["unread"] == 1


@MODES
async def test_python_reactions_users_collections(gs: RunningServer, mode: str) -> None:
    """reactions add/add_child/get/update/filter/delete, enriched reads with reaction flags, users and
    collections CRUD, SU:/SO: references expanded by enriched reads."""
    c = Client(gs, mode)
    feed = c.raw.feed("user", f"r-{mode}")
    user = await c(c.raw.users.add, f"bob-{mode}", {"name": "Bob"})
    assert user["id"] == f"bob-{mode}" and user["data"] == {"name": "Bob"}
    assert (await c(c.raw.users.get, f"bob-{mode}"))["data"] == {"name": "Bob"}
    await c(c.raw.users.update, f"bob-{mode}", {"name": "Bobby"})
    obj = await c(c.raw.collections.add, "food", {"name": "Pizza"}, id=f"pizza-{mode}")
    assert obj["id"] == f"pizza-{mode}" and obj["data"] == {"name": "Pizza"}
    await c(c.raw.collections.upsert, "food", [{"id": f"pasta-{mode}", "name": "Pasta"}])
    sel = await c(c.raw.collections.select, "food", [f"pizza-{mode}", f"pasta-{mode}"])
    assert sorted(o["id"] for o in sel["response"]["data"]) == [f"pasta-{mode}", f"pizza-{mode}"]
    act = await c(feed.add_activity, {"actor": f"SU:bob-{mode}", "verb": "eat", "object": f"SO:food:pizza-{mode}"})
    like = await c(c.raw.reactions.add, "like", act["id"], user_id=f"bob-{mode}", data={"x": 1})
    assert like["kind"] == "like" and like["activity_id"] == act["id"]
    child = await c(c.raw.reactions.add_child, "reply", like["id"], user_id="carl", data={"t": "hi"})
    assert child["parent"] == like["id"]
    assert (await c(c.raw.reactions.get, like["id"]))["data"] == {"x": 1}
    await c(c.raw.reactions.update, like["id"], data={"x": 2})
    listed = await c(c.raw.reactions.filter, activity_id=act["id"], kind="like")
    assert [r["data"] for r in listed["results"]] == [{"x": 2}]
    children = await c(c.raw.reactions.filter, reaction_id=like["id"])
    assert [r["id"] for r in children["results"]] == [child["id"]]
    enriched = await c(feed.get, enrich=True, reactions={"counts": True, "recent": True})
    [doc] = enriched["results"]
    assert doc["reaction_counts"] == {"like": 1} and doc["latest_reactions"]["like"][0]["id"] == like["id"]
    assert doc["actor"]["data"] == {"name": "Bobby"} and doc["object"]["data"] == {"name": "Pizza"}
    await c(c.raw.reactions.delete, like["id"])
    assert (await c(c.raw.reactions.filter, activity_id=act["id"]))["results"] == []
    await c(c.raw.collections.delete, "food", f"pizza-{mode}")
    await c(c.raw.users.delete, f"bob-{mode}")
    kept = await c(feed.get, discard_actors=f"bob-{mode}")
    assert kept["results"] == []


@MODES
async def test_python_child_reactions_counts_and_activity_removal(gs: RunningServer, mode: str) -> None:
    """Reactions carry children_counts and latest_children (get, filter, enriched reads), counts follow
    child deletes; removing the activity (by id or by foreign_id) removes its reactions."""
    c = Client(gs, mode)
    feed = c.raw.feed("user", f"kids-{mode}")
    act = await c(feed.add_activity, {"actor": "ann", "verb": "post", "object": "o:1", "foreign_id": "p:1"})
    note = await c(c.raw.reactions.add, "comment", act["id"], user_id="ann")
    assert note["children_counts"] == {} and note["latest_children"] == {}
    kids = [await c(c.raw.reactions.add_child, "like", note["id"], user_id=u) for u in ("bob", "carl")]
    reply = await c(c.raw.reactions.add_child, "reply", note["id"], user_id="bob", data={"t": "hi"})
    got = await c(c.raw.reactions.get, note["id"])
    assert got["children_counts"] == {"like": 2, "reply": 1}
    assert [k["id"] for k in got["latest_children"]["like"]] == [kids[1]["id"], kids[0]["id"]]
    assert got["latest_children"]["reply"][0]["data"] == {"t": "hi"}
    own = await c(c.raw.reactions.filter, activity_id=act["id"], with_own_children=True, user_id="bob")
    assert own["results"][0]["children_counts"] == {"like": 2, "reply": 1}
    enriched = await c(feed.get, enrich=True, reactions={"recent": True, "counts": True})
    [latest] = enriched["results"][0]["latest_reactions"]["comment"]
    assert latest["children_counts"] == {"like": 2, "reply": 1}
    assert latest["latest_children"]["reply"][0]["id"] == reply["id"]
    await c(c.raw.reactions.delete, kids[0]["id"])
    assert (await c(c.raw.reactions.get, note["id"]))["children_counts"] == {"like": 1, "reply": 1}

    await c(feed.remove_activity, act["id"])
    for gone in (note, kids[1], reply):
        with pytest.raises(StreamApiException):
            await c(c.raw.reactions.get, gone["id"])
    assert (await c(c.raw.reactions.filter, user_id="bob"))["results"] == []
    again = await c(feed.add_activity, {"actor": "ann", "verb": "post", "object": "o:2", "foreign_id": "p:2"})
    like = await c(c.raw.reactions.add, "like", again["id"], user_id="dora", target_feeds=[f"user:dora-{mode}"])
    assert len((await c(c.raw.feed("user", f"dora-{mode}").get))["results"]) == 1
    await c(feed.remove_activity, foreign_id="p:2")
    with pytest.raises(StreamApiException):
        await c(c.raw.reactions.get, like["id"])
    assert (await c(c.raw.reactions.filter, user_id="dora"))["results"] == []
    assert (await c(c.raw.feed("user", f"dora-{mode}").get))["results"] == []


async def test_js_client_child_reactions(gs: RunningServer) -> None:
    """The npm getstream client sees children_counts and latest_children on reactions."""
    js_ready()
    script = """
const stream = require('getstream');
(async () => {
  const [key, secret, app, url] = process.argv.slice(1);
  const client = stream.connect(key, secret, app, { urlOverride: { api: url } });
  const user = client.feed('user', 'jskids');
  const a = await user.addActivity({ actor: 'ann', verb: 'post', object: 'o:1' });
  const note = await client.reactions.add('comment', a.id, {}, { userId: 'ann' });
  const kid = await client.reactions.addChild('like', note, {}, { userId: 'bob' });
  const got = await client.reactions.get(note.id);
  const listed = await client.reactions.filter({ activity_id: a.id });
  await user.removeActivity(a.id);
  let after = 'found';
  try { await client.reactions.get(note.id); } catch (e) { after = e.response ? e.response.status : String(e); }
  console.log(JSON.stringify({ kid: kid.id, counts: got.children_counts,
    latest: got.latest_children.like.map(r => r.id), listed: listed.results[0].children_counts, after }));
})().catch(e => { console.log(JSON.stringify({ crashed: String(e), detail: e.error || null })); });
"""
    url = f"http://127.0.0.1:{gs.settings.server.port}/api/"
    proc = await asyncio.create_subprocess_exec(
        "node",
        "-e",
        script,
        GETSTREAM["api_key"],
        GETSTREAM["api_secret"],
        GETSTREAM["app_id"],
        url,
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert "crashed" not in result, result
    assert result["counts"] == {"like": 1} and result["latest"] == [result["kid"]]
    assert result["listed"] == {"like": 1} and result["after"] == 404


async def test_js_client_follows(gs: RunningServer) -> None:
    """The npm getstream client's follow/following/followers/unfollow (its following/ spelling)."""
    js_ready()
    script = """
const stream = require('getstream');
(async () => {
  const [key, secret, app, url] = process.argv.slice(1);
  const client = stream.connect(key, secret, app, { urlOverride: { api: url } });
  const user = client.feed('user', 'jsstar');
  const tl = client.feed('timeline', 'jsfan');
  const a = await user.addActivity({ actor: 'jsstar', verb: 'post', object: 'o:1' });
  await tl.follow('user', 'jsstar', { limit: 5 });
  const page = await tl.get({ limit: 5 });
  const following = await tl.following();
  const followers = await user.followers();
  const stats = await user.followStats();
  await tl.unfollow('user', 'jsstar');
  const after = await tl.get({ limit: 5 });
  console.log(JSON.stringify({ id: a.id, page: page.results.map(r => [r.id, r.origin]),
    following: following.results.map(f => f.target_id), followers: followers.results.map(f => f.feed_id),
    stats: stats.results.followers.count, after: after.results.length }));
})().catch(e => { console.log(JSON.stringify({ crashed: String(e), detail: e.error || null })); });
"""
    url = f"http://127.0.0.1:{gs.settings.server.port}/api/"
    proc = await asyncio.create_subprocess_exec(
        "node",
        "-e",
        script,
        GETSTREAM["api_key"],
        GETSTREAM["api_secret"],
        GETSTREAM["app_id"],
        url,
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert "crashed" not in result, result
    assert result["page"] == [[result["id"], "user:jsstar"]]
    assert result["following"] == ["user:jsstar"] and result["followers"] == ["timeline:jsfan"]
    assert result["stats"] == 1 and result["after"] == 0
