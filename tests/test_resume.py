"""Resume with (epoch, seq), the subscribe hand-over, and gap detection (issue: no lost events).

The first tests drive the hub directly with a scripted change source and broker, so the races
(an event that is both replayed and still in flight on pub/sub; a gap while a fill is running)
happen every time, not by luck. The rest run a real server against real Redis.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from conftest import nothing_more, recv, redis_client, send, subscribe

from server.acl import Viewer
from server.hub import Hub

RIGHTS = {"room:*": ["read", "write", "member"]}
ACTIVITY = {"verb": "post", "object": "o:1"}


# -- the hub, scripted ---------------------------------------------------------------------------


def change(seq: int, epoch: str = "e1", event: str = "created", **activity: Any) -> bytes:
    body = {"id": f"a{seq}", "seq": seq, "actor": {"id": "u"}, "audience": [{"type": "members"}], **activity}
    return orjson.dumps({"seq": seq, "epoch": epoch, "event": event, "feed": "f", "activity": body})


@dataclass
class Cursor:
    epoch: str
    seq: int
    recovered: bool
    events: list[bytes]


@dataclass
class ScriptedLog:
    """A change log the test appends to; ``cursor`` answers like ``store.cursor``."""

    epoch: str = "e1"
    log: list[bytes] = field(default_factory=list)
    window: int = 1000
    gate: asyncio.Event | None = None  # when set, cursor reads wait for it
    reads: int = 0

    def append(self, seq: int, **kwargs: Any) -> bytes:
        raw = change(seq, self.epoch, **kwargs)
        self.log.append(raw)
        return raw

    async def cursor(self, feed: str, since: tuple[str, int] | None = None) -> Cursor:
        self.reads += 1
        seq = len(self.log)
        snapshot = list(self.log)
        if self.gate is not None:
            await self.gate.wait()
        if since is None:
            return Cursor(self.epoch, seq, True, [])
        epoch, after = since
        if epoch != self.epoch or after > seq or seq - after > self.window:
            return Cursor(self.epoch, seq, False, [])
        return Cursor(self.epoch, seq, True, snapshot[after:])


class Broker:
    async def subscribe(self, feed: str) -> None:
        return None

    def unsubscribe(self, feed: str) -> None:
        return None


class Stats:
    def __init__(self) -> None:
        self.filled = 0
        self.resets = 0

    def delivered(self, n: int) -> None:
        pass

    def gap_filled(self, n: int) -> None:
        self.filled += n

    def reset_sent(self, n: int) -> None:
        self.resets += n

    def subscriptions(self, delta: int) -> None:
        pass


class Peer:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if f["type"] == "activity"]


MEMBER = Viewer(sub="m", roles=frozenset(), admin=False, member=True)


def make_hub(log: ScriptedLog) -> tuple[Hub, Stats]:
    stats = Stats()
    hub = Hub(log, stats)
    hub.attach(Broker())
    return hub, stats


async def test_replayed_events_still_in_flight_are_not_delivered_twice():
    """Joining a live room with ``since``: events both replayed from the log and still on their way
    over pub/sub reach the new subscriber once."""
    log = ScriptedLog()
    hub, _ = make_hub(log)
    first = Peer()
    await hub.subscribe(first, "f", MEMBER)
    for seq in range(1, 11):
        hub.on_event("f", log.append(seq))
    in_flight = [log.append(seq) for seq in (11, 12)]  # written, not yet arrived over pub/sub
    second = Peer()
    await hub.subscribe(second, "f", MEMBER, since=("e1", 8))
    for raw in in_flight:
        hub.on_event("f", raw)
    hub.on_event("f", log.append(13))
    assert first.seqs() == list(range(1, 14))
    assert second.frames[0]["type"] == "subscribed" and second.frames[0]["seq"] == 12
    assert second.seqs() == [9, 10, 11, 12, 13]


async def test_subscribe_without_since_starts_after_the_reported_seq():
    """Without ``since`` a subscriber receives only events after the ``seq`` in its reply."""
    log = ScriptedLog()
    hub, _ = make_hub(log)
    first = Peer()
    await hub.subscribe(first, "f", MEMBER)
    hub.on_event("f", log.append(1))
    in_flight = log.append(2)
    second = Peer()
    await hub.subscribe(second, "f", MEMBER)
    hub.on_event("f", in_flight)
    hub.on_event("f", log.append(3))
    assert second.frames[0]["seq"] == 2
    assert second.seqs() == [3]


async def test_events_during_a_slow_handshake_are_held_and_deduplicated():
    """Events published while the cursor is being read are held, then released after the replay."""
    log = ScriptedLog()
    hub, _ = make_hub(log)
    for seq in range(1, 6):
        log.append(seq)
    log.gate = asyncio.Event()
    peer = Peer()
    task = asyncio.create_task(hub.subscribe(peer, "f", MEMBER, since=("e1", 2)))
    while not log.reads:
        await asyncio.sleep(0)
    for seq in (6, 7):
        hub.on_event("f", log.append(seq))
    log.gate.set()
    await asyncio.wait_for(task, 2)
    hub.on_event("f", log.append(8))
    assert peer.frames[0] == {**peer.frames[0], "type": "subscribed", "seq": 5, "recovered": True}
    assert peer.seqs() == [3, 4, 5, 6, 7, 8]


async def test_jump_in_seq_is_filled_from_the_log_before_later_events():
    """A pub/sub message lost on the way (seq jumps) is fetched from the log; order is kept."""
    log = ScriptedLog()
    hub, stats = make_hub(log)
    peer = Peer()
    await hub.subscribe(peer, "f", MEMBER)
    hub.on_event("f", log.append(1))
    log.append(2)  # never arrives over pub/sub
    log.append(3)  # neither
    hub.on_event("f", log.append(4))
    hub.on_event("f", log.append(5))
    for _ in range(20):
        await asyncio.sleep(0.01)
        if len(peer.seqs()) == 5:
            break
    assert peer.seqs() == [1, 2, 3, 4, 5]
    assert stats.filled == 2


async def test_gap_beyond_the_log_is_a_reset():
    """A gap the log no longer covers becomes a ``reset``, then delivery continues."""
    log = ScriptedLog(window=2)
    hub, stats = make_hub(log)
    peer = Peer()
    await hub.subscribe(peer, "f", MEMBER)
    hub.on_event("f", log.append(1))
    for seq in (2, 3, 4):
        log.append(seq)  # lost; the log keeps only the last 2 after the next write
    hub.on_event("f", log.append(5))
    await asyncio.sleep(0.05)
    hub.on_event("f", log.append(6))
    kinds = [f["type"] for f in peer.frames]
    assert kinds == ["subscribed", "activity", "reset", "activity"], peer.frames
    assert peer.seqs() == [1, 6]
    assert stats.resets == 1


async def test_other_epoch_is_checked_against_the_log_and_stale_events_dropped():
    """An event of another epoch is not trusted on its own: the log says the history was replaced
    (→ one ``reset``), and late events of the old history are dropped, not re-adopted."""
    log = ScriptedLog()
    hub, stats = make_hub(log)
    peer = Peer()
    await hub.subscribe(peer, "f", MEMBER)
    hub.on_event("f", log.append(1))
    late = log.append(2)  # of the old history, still in flight
    log.epoch, log.log = "e2", []  # Redis flushed
    hub.on_event("f", log.append(1))
    await asyncio.sleep(0.01)
    hub.on_event("f", late)
    hub.on_event("f", log.append(2))
    await asyncio.sleep(0.01)
    assert [(f["type"], f.get("seq"), f.get("epoch")) for f in peer.frames[1:]] == [
        ("activity", 1, None),
        ("reset", 1, "e2"),
        ("activity", 2, None),
    ]
    assert stats.resets == 1


async def test_event_of_a_foreign_epoch_that_the_log_denies_is_dropped():
    """A stray event whose epoch the log does not know (published before the last history was
    read) is dropped without a reset."""
    log = ScriptedLog()
    hub, stats = make_hub(log)
    peer = Peer()
    await hub.subscribe(peer, "f", MEMBER)
    hub.on_event("f", log.append(1))
    hub.on_event("f", change(7, "e0"))
    hub.on_event("f", log.append(2))
    await asyncio.sleep(0.01)
    assert peer.seqs() == [1, 2] and stats.resets == 0


async def test_resync_after_reconnect_fetches_what_was_missed():
    """``on_resync`` (after a pub/sub reconnect) delivers what was published while it was down."""
    log = ScriptedLog()
    hub, stats = make_hub(log)
    peer = Peer()
    await hub.subscribe(peer, "f", MEMBER)
    hub.on_event("f", log.append(1))
    log.append(2)
    log.append(3)
    hub.on_resync()
    for _ in range(20):
        await asyncio.sleep(0.01)
        if len(peer.seqs()) == 3:
            break
    hub.on_event("f", log.append(3 + 1))
    assert peer.seqs() == [1, 2, 3, 4] and stats.filled == 2


# -- against a real server -----------------------------------------------------------------------


async def test_resume_replays_created_updated_deleted_then_continues_live(server):
    """``since`` replays every missed change (created, updated, deleted) in seq order, then live
    events follow with no gap and no duplicate."""
    token = server.token("a", RIGHTS)
    http = server.http(token)
    ws = await server.ws(token)
    reply = await subscribe(ws, "room:resume")
    epoch, seq = reply["epoch"], reply["seq"]
    await ws.close()

    first = (await http.post("/v1/feeds/room:resume/activities", json=ACTIVITY)).json()["activities"][0]
    second = (await http.post("/v1/feeds/room:resume/activities", json=ACTIVITY)).json()["activities"][0]
    patched = await http.patch(f"/v1/feeds/room:resume/activities/{first['id']}", json={"set": {"text": "edited"}})
    assert patched.status_code == 200, patched.text
    assert (await http.delete(f"/v1/feeds/room:resume/activities/{second['id']}")).status_code == 204

    ws = await server.ws(token)
    reply = await subscribe(ws, "room:resume", since={"epoch": epoch, "seq": seq})
    assert reply == {**reply, "recovered": True, "seq": seq + 4, "epoch": epoch}
    replay = [await recv(ws) for _ in range(4)]
    assert [(m["seq"], m["event"], m["activity"]["id"]) for m in replay] == [
        (seq + 1, "created", first["id"]),
        (seq + 2, "created", second["id"]),
        (seq + 3, "updated", first["id"]),
        (seq + 4, "deleted", second["id"]),
    ]
    assert replay[2]["activity"]["text"] == "edited"
    await http.post("/v1/feeds/room:resume/activities", json=ACTIVITY)
    live = await recv(ws)
    assert (live["seq"], live["event"]) == (seq + 5, "created")
    await nothing_more(ws)


async def test_resume_is_filtered_by_audience(server):
    """A replay shows only what the subscriber may see; an update that hides an activity from it
    is a ``deleted``, one that reveals it a ``created``."""
    admin = server.http(server.token("boss", RIGHTS, admin=True))
    viewer_token = server.token("v", {"room:*": ["read"]})
    ws = await server.ws(viewer_token)
    reply = await subscribe(ws, "room:aud")
    await ws.close()

    async def post(audience: list[Any], **extra: Any) -> dict[str, Any]:
        response = await admin.post("/v1/feeds/room:aud/activities", json={**ACTIVITY, "audience": audience, **extra})
        assert response.status_code == 201, response.text
        return response.json()["activities"][0]

    members_only = await post(["members"])
    to_v = await post(["identity:v"])
    everyone = await post(["everyone"], foreign_id="x", time="2026-01-01T00:00:00Z")
    await post(["members"], foreign_id="x", time="2026-01-01T00:00:00Z")  # upsert: now hidden from v
    revealed = await admin.patch(
        f"/v1/feeds/room:aud/activities/{members_only['id']}", json={"set": {"audience": [{"type": "everyone"}]}}
    )
    assert revealed.status_code == 200, revealed.text

    ws = await server.ws(viewer_token)
    resumed = await subscribe(ws, "room:aud", since={"epoch": reply["epoch"], "seq": reply["seq"]})
    assert resumed["recovered"] is True
    got = [await recv(ws) for _ in range(4)]
    base = reply["seq"]
    assert [(m["seq"] - base, m["event"], m["activity"]["id"]) for m in got] == [
        (2, "created", to_v["id"]),
        (3, "created", everyone["id"]),
        (4, "deleted", everyone["id"]),
        (5, "created", members_only["id"]),
    ]
    await nothing_more(ws)


async def test_recovered_false_on_other_epoch_or_beyond_the_window(server_factory):
    """``recovered: false`` (and no replay) for a different epoch, a cursor older than
    ``resume_window`` or one from the future; exactly the window is still recovered."""
    srv = await server_factory(feeds={"resume_window": 5})
    token = srv.token("a", RIGHTS)
    await srv.http(token).post("/v1/feeds/room:win/activities", json={"activities": [ACTIVITY] * 10})
    ws = await srv.ws(token)
    epoch = (await subscribe(ws, "room:win"))["epoch"]
    for since, recovered in (
        ({"epoch": "0123456789abcdef", "seq": 9}, False),
        ({"epoch": epoch, "seq": 4}, False),
        ({"epoch": epoch, "seq": 11}, False),
        ({"epoch": epoch, "seq": 10}, True),
    ):
        reply = await subscribe(ws, "room:win", since=since)
        assert (reply["recovered"], reply["seq"], reply["epoch"]) == (recovered, 10, epoch), since
        await nothing_more(ws, 0.1)
    reply = await subscribe(ws, "room:win", since={"epoch": epoch, "seq": 5})
    assert reply["recovered"] is True
    assert [(await recv(ws))["seq"] for _ in range(5)] == [6, 7, 8, 9, 10]
    await nothing_more(ws, 0.1)


async def test_subscribers_joining_mid_burst_see_no_gap_and_no_duplicate(server):
    """Clients subscribing (with and without ``since``) while a burst is being written each get a
    contiguous run of seqs: from 1 with ``since`` at 0, from their reply's seq otherwise."""
    token = server.token("a", RIGHTS)
    http = server.http(token)
    probe = await server.ws(token)
    epoch = (await subscribe(probe, "room:burst"))["epoch"]
    await probe.close()  # a client that stops reading could not finish its close handshake later
    total = 600

    async def writer() -> None:
        for _ in range(total // 20):
            assert (
                await http.post("/v1/feeds/room:burst/activities", json={"activities": [ACTIVITY] * 20})
            ).status_code == 201

    async def joiner(i: int) -> tuple[dict[str, Any], list[int]]:
        await asyncio.sleep(i * 0.01)
        ws = await server.ws(token)
        extra = {"since": {"epoch": epoch, "seq": 0}} if i % 2 == 0 else {}
        reply = await subscribe(ws, "room:burst", **extra)
        seqs: list[int] = []
        try:
            async with asyncio.timeout(15):
                while (seqs[-1] if seqs else 0 if extra else reply["seq"]) < total:
                    message = await recv(ws, 15)
                    seqs.append(message.get("seq", -1))
        except TimeoutError:
            pass  # reported below
        return reply, seqs

    results = await asyncio.gather(writer(), *(joiner(i) for i in range(30)))
    for i, (reply, seqs) in enumerate(results[1:]):
        start = 1 if i % 2 == 0 else reply["seq"] + 1
        assert seqs == list(range(start, total + 1)), (i, reply, _runs(seqs))


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 8] → [(1, 3), (7, 8)]: a readable summary of a seq list."""
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


async def test_lost_pubsub_message_is_filled_and_counted(server, redis_url, prefix):
    """A change that never arrived over pub/sub (seq jumps) is fetched from the change log before
    the later one is delivered; ``feed_gap_events_filled`` counts it."""
    token = server.token("a", RIGHTS)
    http = server.http(token)
    ws = await server.ws(token)
    reply = await subscribe(ws, "room:gap")
    await http.post("/v1/feeds/room:gap/activities", json=ACTIVITY)
    assert (await recv(ws))["seq"] == reply["seq"] + 1
    # Append a change to the log as the write script would, but without publishing it.
    client = redis_client(redis_url)
    keys = server.app.keys.feed("room:gap")
    seq = await client.hincrby(keys.meta, "seq", 1)
    body = {"id": "lost-1", "seq": seq, "verb": "post", "actor": {"id": "a"}, "audience": [{"type": "members"}]}
    await client.lpush(
        keys.log,
        orjson.dumps({"seq": seq, "epoch": reply["epoch"], "event": "created", "feed": "room:gap", "activity": body}),
    )
    await client.aclose()
    await http.post("/v1/feeds/room:gap/activities", json=ACTIVITY)
    got = [await recv(ws) for _ in range(2)]
    assert [(m["seq"], m["activity"]["id"]) for m in got][0] == (seq, "lost-1")
    assert got[1]["seq"] == seq + 1
    metrics = (await http.get("/metrics")).text
    assert "feed_gap_events_filled_total 1.0" in metrics


async def test_gap_the_log_cannot_fill_is_a_reset(server, redis_url):
    """A jump the change log no longer covers becomes ``reset`` (counted in ``feed_resets``)."""
    token = server.token("a", RIGHTS)
    http = server.http(token)
    ws = await server.ws(token)
    reply = await subscribe(ws, "room:hole")
    client = redis_client(redis_url)
    keys = server.app.keys.feed("room:hole")
    await client.hincrby(keys.meta, "seq", 3)  # three changes nobody can replay any more
    await client.aclose()
    await http.post("/v1/feeds/room:hole/activities", json=ACTIVITY)
    message = await recv(ws)
    assert message == {"type": "reset", "feed": "room:hole", "epoch": reply["epoch"], "seq": reply["seq"] + 4}
    await http.post("/v1/feeds/room:hole/activities", json=ACTIVITY)
    assert (await recv(ws))["seq"] == reply["seq"] + 5
    assert "feed_resets_total 1.0" in (await http.get("/metrics")).text


async def test_resume_after_unsubscribe_on_the_same_connection(server):
    """Unsubscribe, miss some changes, subscribe again with ``since`` on the same socket."""
    token = server.token("a", RIGHTS)
    http = server.http(token)
    ws = await server.ws(token)
    n = 3
    reply = await subscribe(ws, "room:again")
    await send(ws, {"type": "unsubscribe", "feed": "room:again"})
    assert (await recv(ws))["type"] == "unsubscribed"
    await http.post("/v1/feeds/room:again/activities", json={"activities": [ACTIVITY] * n})
    again = await subscribe(ws, "room:again", since={"epoch": reply["epoch"], "seq": reply["seq"]})
    assert again["recovered"] is True
    assert [(await recv(ws))["seq"] for _ in range(n)] == list(range(reply["seq"] + 1, reply["seq"] + n + 1))
    await nothing_more(ws)
