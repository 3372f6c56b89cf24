"""Hub: this process's registry of feed → local subscribers, and the fan-out of change events.

No Redis and no Starlette here: change events come in through ``on_event`` (from the broker) and
missed ones are fetched through a ``ChangeSource`` (the store); frames go out through each
subscriber's ``Peer.send``, which never blocks (a bounded queue drained by a writer task per
connection, see ``ws.py``).

Guarantees kept here (SPEC §5): per feed, events are delivered in ``seq`` order, at most once,
and never with a silent gap — a jump in ``seq`` is filled from the change log before anything
later is delivered, and what the log no longer holds becomes a ``reset``.

Two positions are tracked. Each room knows the last ``(epoch, seq)`` it fanned out; each
subscription knows the last one its peer was given (its cursor, then each event), so an event
that was both replayed to a newcomer and still in flight on pub/sub reaches it once. The change
log in Redis is the arbiter: an event whose epoch differs from the room's is never trusted on its
own — a cursor read decides whether it is stale (dropped) or the history was lost (``reset``).

Audience filtering uses an index per room (admins, members, authenticated, by identity, by role),
so the cost of an event is proportional to the subscribers it reaches, not to the room size.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from . import protocol
from .acl import FOLLOW_MARK, Viewer, actor_id, admits, follow_origin
from .errors import FeedError

log = logging.getLogger("feedserver.hub")

_FILL_RETRY_DELAY = 0.5
#: Concurrent change-log reads for gap fills (a reconnect re-syncs every room at once).
_MAX_CONCURRENT_FILLS = 16
#: Old epochs remembered per room, so late events of a replaced history are dropped at once.
_RETIRED_EPOCHS = 4

# What a subscription holds back during its handshake: change events, resets, other frames, and
# resets that must reach the peer even if its position looks current (a history was rewritten).
_EVENT, _RESET, _OTHER, _FORCED_RESET = 0, 1, 2, 3


class Peer(Protocol):
    """One client connection, as the hub sees it."""

    def send(self, frame: bytes) -> None:
        """Queue ``frame`` without blocking (overflow closes the connection with 4008)."""


class Cursor(Protocol):
    """A feed's position and the events after a resume cursor (``store.CursorResult``)."""

    @property
    def epoch(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def recovered(self) -> bool: ...

    @property
    def events(self) -> list[bytes]: ...


class ChangeSource(Protocol):
    """Where the hub reads a feed's cursor and change log."""

    async def cursor(self, feed: str, since: tuple[str, int] | None = None) -> Cursor:
        """The feed's (epoch, seq), and with ``since`` the events after it."""


class Broker(Protocol):
    """The pub/sub side (``broker.Broker``)."""

    async def subscribe(self, feed: str) -> None:
        """Return once events of ``feed`` flow to ``Hub.on_event``."""

    def unsubscribe(self, feed: str) -> None:
        """Stop receiving events of ``feed``."""


class Stats(Protocol):
    """Counters the hub reports (``metrics.Metrics``)."""

    def delivered(self, n: int) -> None:
        """``n`` frames handed to subscribers."""

    def gap_filled(self, n: int) -> None:
        """``n`` events fetched from the change log to fill a gap."""

    def reset_sent(self, n: int) -> None:
        """``n`` subscribers told to reload."""

    def subscriptions(self, delta: int) -> None:
        """Subscriptions opened (+) or closed (-)."""


class Subscription:
    """One peer's subscription to one feed, and the position its peer has reached."""

    __slots__ = ("peer", "viewer", "syncing", "buffer", "epoch", "seq")

    def __init__(self, peer: Peer, viewer: Viewer) -> None:
        self.peer = peer
        self.viewer = viewer
        # While the subscribe handshake reads the cursor, frames are held here.
        self.syncing = True
        self.buffer: list[tuple[int, str | None, int, bytes]] = []
        self.epoch: str | None = None
        self.seq = 0  # the last seq this peer was given (its cursor, then each event)

    def deliver(self, epoch: str | None, seq: int, frame: bytes) -> None:
        """Send a change event once: not if the peer already has this seq (replayed to it)."""
        if self.syncing:
            self.buffer.append((_EVENT, epoch, seq, frame))
        elif seq > self.seq:
            self.seq = seq
            self.peer.send(frame)

    def reset(self, epoch: str, seq: int, frame: bytes, *, force: bool = False) -> bool:
        """Tell the peer to reload, unless its own cursor is already at or past (epoch, seq).

        ``force``: the feed's history was rewritten under the same epoch (a failover lost
        acknowledged writes and their seqs were reused): a cursor at or past ``seq`` may name
        changes that no longer exist, so the peer reloads anyway.
        """
        if self.syncing:
            self.buffer.append((_FORCED_RESET if force else _RESET, epoch, seq, frame))
            return False
        if not force and self.epoch == epoch and self.seq >= seq:
            return False
        self.epoch, self.seq = epoch, seq
        self.peer.send(frame)
        return True

    def push(self, frame: bytes) -> None:
        """A frame outside the change stream (notification counts); held during the handshake."""
        if self.syncing:
            self.buffer.append((_OTHER, None, 0, frame))
        else:
            self.peer.send(frame)

    def go_live(self, epoch: str, seq: int) -> int:
        """End the handshake at the peer's cursor (epoch, seq): release what was held, minus what
        the cursor already covers. Returns how many resets were sent."""
        self.epoch, self.seq = epoch, seq
        self.syncing = False
        held, self.buffer = self.buffer, []
        resets = 0
        for kind, item_epoch, item_seq, frame in held:
            if kind == _EVENT:
                if item_epoch == self.epoch:
                    self.deliver(item_epoch, item_seq, frame)
            elif kind == _RESET or kind == _FORCED_RESET:
                assert item_epoch is not None
                resets += self.reset(item_epoch, item_seq, frame, force=kind == _FORCED_RESET)
            else:
                self.peer.send(frame)
        return resets


class Room:
    """The local subscribers of one feed, indexed by what audiences admit them."""

    __slots__ = (
        "feed",
        "epoch",
        "seq",
        "subs",
        "authed",
        "admins",
        "members",
        "by_sub",
        "by_role",
        "pending",
        "filling",
        "refill",
        "joined",
        "retired",
        "last",
        "fill_failing",
    )

    def __init__(self, feed: str) -> None:
        self.feed = feed
        self.epoch: str | None = None
        self.seq: int | None = None  # last seq delivered; None until the first cursor read
        self.subs: dict[Peer, Subscription] = {}
        self.authed: set[Subscription] = set()
        self.admins: set[Subscription] = set()
        self.members: set[Subscription] = set()
        self.by_sub: dict[str, set[Subscription]] = {}
        self.by_role: dict[str, set[Subscription]] = {}
        self.pending: list[dict[str, Any]] = []  # events held back by a gap (or before init)
        self.filling = False
        self.refill = False  # a fill must read the log once more (a reconnect happened meanwhile)
        self.joined: asyncio.Future[None] | None = None
        self.retired: list[str] = []  # epochs this room has left behind
        # The change event delivered at ``seq`` (None: unknown). A fill compares it with the log's
        # entry at that seq: after a failover that lost acknowledged writes, the seq may have been
        # reused for another change, which only content tells apart.
        self.last: dict[str, Any] | None = None
        self.fill_failing = False  # a change-log read failed (logged once per outage, not per retry)

    def add(self, sub: Subscription) -> None:
        """Register ``sub`` in the room and every index it belongs to."""
        self.subs[sub.peer] = sub
        v = sub.viewer
        if v.sub is not None:
            self.authed.add(sub)
            self.by_sub.setdefault(v.sub, set()).add(sub)
            for role in v.roles:
                self.by_role.setdefault(role, set()).add(sub)
        if v.admin:
            self.admins.add(sub)
        if v.member:
            self.members.add(sub)

    def remove(self, peer: Peer) -> Subscription | None:
        """Drop ``peer``'s subscription from the room and its indexes."""
        sub = self.subs.pop(peer, None)
        if sub is None:
            return None
        v = sub.viewer
        self.authed.discard(sub)
        self.admins.discard(sub)
        self.members.discard(sub)
        if v.sub is not None:
            _discard(self.by_sub, v.sub, sub)
            for role in v.roles:
                _discard(self.by_role, role, sub)
        return sub

    def recipients(self, activity: Mapping[str, Any]) -> Collection[Subscription]:
        """Every subscriber allowed to see ``activity`` (same rule as ``Viewer.can_see``)."""
        audience = activity.get("audience") or ()
        kinds = {entry.get("type") for entry in audience}
        if "public" in kinds:
            return self.subs.values()
        if "everyone" in kinds:
            return self.authed
        out = set(self.admins)
        actor = actor_id(activity)
        if actor is not None and actor in self.by_sub:
            out |= self.by_sub[actor]
        if "members" in kinds:
            out |= self.members
        for entry in audience:
            kind = entry.get("type")
            if kind == "identity":
                out |= self.by_sub.get(entry.get("id"), _EMPTY)
            elif kind == "role":
                out |= self.by_role.get(entry.get("id"), _EMPTY)
        return out


_EMPTY: frozenset[Subscription] = frozenset()


def _discard(index: dict[str, set[Subscription]], key: str, sub: Subscription) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(sub)
        if not members:
            del index[key]


def event_for(viewer: Viewer, event: Mapping[str, Any]) -> tuple[str, Any] | None:
    """What one viewer receives for a change event: (event name, activity payload) or None.

    An update that changes who may see the activity is a ``deleted`` for those who lose sight of it
    and a ``created`` for those who gain it. Used for resume replays; live fan-out computes the
    same thing for a whole room at once with ``Room.recipients``.
    """
    kind, activity = event["event"], event["activity"]
    if follow_origin(activity) is not None:  # judged in the origin feed (acl.Viewer.can_see)
        return _copy_event_for(viewer, event)
    sees_now = viewer.admin or admits(viewer, actor_id(activity), activity.get("audience") or ())
    if kind == "created" or kind.startswith("reaction."):  # a reaction event: whoever sees its activity
        return (kind, activity) if sees_now else None
    if kind == "deleted":
        return (kind, protocol.deleted_stub(activity)) if sees_now else None
    prev = event.get("prev") or activity
    saw = viewer.admin or admits(viewer, actor_id(prev), prev.get("audience") or ())
    if saw and sees_now:
        return "updated", activity
    if saw:
        return "deleted", protocol.deleted_stub(activity)
    if sees_now:
        return "created", activity
    return None


def _copy_event_for(viewer: Viewer, event: Mapping[str, Any]) -> tuple[str, Any] | None:
    """``event_for`` for a follow copy: both versions judged by the origin feed's rule."""
    kind, activity = event["event"], event["activity"]
    sees_now = viewer.can_see(activity)
    if kind == "created":
        return (kind, activity) if sees_now else None
    if kind == "deleted":
        return (kind, protocol.deleted_stub(activity)) if sees_now else None
    prev = {**(event.get("prev") or activity), "origin": activity["origin"], FOLLOW_MARK: "follow"}
    saw = viewer.can_see(prev)
    if saw and sees_now:
        return "updated", activity
    if saw:
        return "deleted", protocol.deleted_stub(activity)
    return ("created", activity) if sees_now else None


class Hub:
    """Fan-out of change events to this process's subscribers."""

    def __init__(self, source: ChangeSource, stats: Stats) -> None:
        self._source = source
        self._stats = stats
        self._broker: Broker | None = None
        self.rooms: dict[str, Room] = {}
        self._peer_feeds: dict[Peer, set[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._fill_slots = asyncio.Semaphore(_MAX_CONCURRENT_FILLS)
        #: A change event with derived fields added, as sent (aggregated feeds' group): a copy,
        #: never the logged event itself.
        self.decorate: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None

    def attach(self, broker: Broker) -> None:
        """Connect the broker (built after the hub, since it calls back into it)."""
        self._broker = broker

    # -- subscriptions -------------------------------------------------------------------------

    async def subscribe(
        self,
        peer: Peer,
        feed: str,
        viewer: Viewer,
        since: tuple[str, int] | None = None,
        ref: protocol.Ref = None,
    ) -> None:
        """Subscribe ``peer`` to ``feed``: send ``subscribed``, the replay, then live events.

        The room is subscribed on pub/sub *before* the cursor is read, and events arriving during
        the handshake are held and de-duplicated by ``seq``, so nothing falls between replay and
        live delivery.
        """
        assert self._broker is not None, "Hub.attach(broker) first"
        self.unsubscribe(peer, feed)
        room = self.rooms.get(feed)
        if room is None:
            room = self.rooms[feed] = Room(feed)
            room.joined = asyncio.ensure_future(self._broker.subscribe(feed))
        sub = Subscription(peer, viewer)
        room.add(sub)
        self._peer_feeds.setdefault(peer, set()).add(feed)
        self._stats.subscriptions(1)
        try:
            assert room.joined is not None
            await asyncio.shield(room.joined)
            cursor = await self._source.cursor(feed, since)
        except BaseException:
            self.unsubscribe(peer, feed)
            raise
        if room.subs.get(peer) is not sub:  # unsubscribed (or closed) meanwhile
            return
        self._adopt_cursor(room, cursor)
        peer.send(protocol.subscribed(feed, cursor.seq, cursor.epoch, since is not None and cursor.recovered, ref))
        for raw in cursor.events:
            event = orjson.loads(raw)
            if self.decorate is not None:
                event = self.decorate(feed, event)
            if event.get("seq", 0) <= cursor.seq and (out := event_for(viewer, event)) is not None:
                peer.send(protocol.activity_frame(feed, event["seq"], out[0], out[1]))
        # Live from the cursor on: held events it already covers (replayed, or before a fresh
        # subscriber's starting point) are dropped, later ones follow in order.
        self._stats.reset_sent(sub.go_live(cursor.epoch, cursor.seq))

    def unsubscribe(self, peer: Peer, feed: str) -> bool:
        """Remove ``peer`` from ``feed``; returns whether it was subscribed."""
        room = self.rooms.get(feed)
        if room is None or room.remove(peer) is None:
            return False
        feeds = self._peer_feeds.get(peer)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del self._peer_feeds[peer]
        self._stats.subscriptions(-1)
        if not room.subs:
            del self.rooms[feed]
            if room.joined is not None:
                # Unsubscribe once the pub/sub subscription is in place (now, or when it lands).
                room.joined.add_done_callback(lambda joined: self._leave(feed, joined))
        return True

    def _leave(self, feed: str, joined: asyncio.Future[None]) -> None:
        if feed in self.rooms or joined.cancelled() or joined.exception() is not None:
            return  # a new room took over the subscription, or there is none to drop
        assert self._broker is not None
        self._broker.unsubscribe(feed)

    def reauthorize(self, peer: Peer, viewer_of: Callable[[str], Viewer | None]) -> list[str]:
        """Re-check every subscription of ``peer`` after its credentials changed.

        ``viewer_of(feed)`` is the peer's new standing on ``feed``, or None when it may no longer
        read it: that subscription ends (the feeds ended are returned); the others keep their
        position and are re-indexed under the new viewer, effective for the next event.
        """
        ended = []
        for feed in sorted(self._peer_feeds.get(peer, ())):
            viewer = viewer_of(feed)
            room = self.rooms[feed]
            if viewer is None:
                self.unsubscribe(peer, feed)
                ended.append(feed)
                continue
            sub = room.remove(peer)
            assert sub is not None
            sub.viewer = viewer
            room.add(sub)
        return ended

    def drop_peer(self, peer: Peer) -> None:
        """Forget every subscription of a closed connection."""
        for feed in list(self._peer_feeds.get(peer, ())):
            self.unsubscribe(peer, feed)

    # -- events --------------------------------------------------------------------------------

    def on_event(self, feed: str, data: bytes) -> None:
        """A pub/sub message (called by the broker, in publication order): one change event, the
        events of one write script as a JSON array, or a notification feed's new counts."""
        room = self.rooms.get(feed)
        if room is None:
            return
        try:
            message = orjson.loads(data)
            events = message if isinstance(message, list) else [message]
            if "counts" in events[0]:  # notification counts: not a change, no seq, straight through
                counts, groups = events[0]["counts"], events[0].get("groups")
                frame = protocol.notification_counts(
                    feed,
                    int(counts["unseen"]),
                    int(counts["unread"]),
                    None if groups is None else (int(groups["unseen"]), int(groups["unread"])),
                )
                for sub in room.subs.values():
                    sub.push(frame)  # held subscribers get it after their handshake
                return
            for event in events:
                int(event["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            log.error("dropping a malformed change event on %s", feed)
            return
        for event in events:
            if room.seq is None or room.filling:
                room.pending.append(event)
            else:
                self._accept(room, event)

    def on_resync(self, feeds: Collection[str] | None = None) -> None:
        """After a pub/sub reconnect or re-placement: fetch from the change log what ``feeds`` (None:
        every room) may have missed.

        Rooms still in their first handshake are marked, and fill once their cursor is known (the
        cursor may have been read before the connection dropped); a fill already running reads
        the log once more when it is done.
        """
        if feeds is None:
            rooms: Iterable[Room] = list(self.rooms.values())
        else:
            rooms = [room for feed in feeds if (room := self.rooms.get(feed)) is not None]
        for room in rooms:
            if room.seq is None:
                room.refill = True
            else:
                self._start_fill(room)

    def _adopt_cursor(self, room: Room, cursor: Cursor) -> None:
        """A subscriber's handshake read ``cursor`` (after the room was subscribed on pub/sub)."""
        if room.seq is None:
            room.epoch, room.seq = cursor.epoch, cursor.seq
            if room.refill:
                self._start_fill(room)
        elif room.epoch != cursor.epoch:  # Redis lost this feed's history since we last looked
            self._reset(room, cursor.epoch, cursor.seq)
        if room.pending and not room.filling:
            self._release_pending(room)

    def _accept(self, room: Room, event: dict[str, Any]) -> None:
        """Deliver ``event`` if it is the next one; otherwise hold it and let the log decide."""
        assert room.seq is not None
        epoch, seq = event.get("epoch"), event["seq"]
        if epoch in room.retired:
            return  # a late event of a history this room has already left behind
        if epoch != room.epoch or seq > room.seq + 1:
            # A jump, or another epoch: never trusted on its own — a cursor read decides.
            room.pending.append(event)
            self._start_fill(room)
            return
        if seq <= room.seq:
            if seq == room.seq and room.last is not None and event != room.last:
                # Same seq, another change: the history was rewritten (lost writes); the log decides.
                room.pending.append(event)
                self._start_fill(room)
            return  # already delivered (replayed from the log, or a duplicate)
        room.seq = seq
        self._fanout(room, event)

    def _release_pending(self, room: Room) -> None:
        """Deliver the held events that now follow on; fill from the log if a gap remains."""
        held, room.pending = sorted(room.pending, key=_seq), []
        for event in held:
            self._accept(room, event)

    def _start_fill(self, room: Room) -> None:
        if room.filling:
            room.refill = True
            return
        room.filling = True
        task = asyncio.create_task(self._fill(room), name=f"fill:{room.feed}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill(self, room: Room) -> None:
        """Read the change log after the room's position until nothing is missing any more.

        Events held when a read is issued were published before it: if their epoch is not the
        log's, they belong to a lost history and are dropped. Events arriving during the read
        may be newer than it and are kept for the next round.
        """
        try:
            while self.rooms.get(room.feed) is room:
                assert room.seq is not None and room.epoch is not None
                room.refill = False
                issued_with, asked = len(room.pending), (room.epoch, room.seq)
                # Read from one change earlier when the last delivered change is known: the log's
                # entry at room.seq must be that very change, or the history was rewritten.
                last = room.last if room.seq > 0 else None
                cursor = await self._read_log(room, (room.epoch, room.seq - (last is not None)))
                if cursor is None:
                    continue
                if self.rooms.get(room.feed) is not room:
                    return
                if (room.epoch, room.seq) != asked:  # a handshake reset the room meanwhile: read again
                    continue
                earlier, later = room.pending[:issued_with], room.pending[issued_with:]
                events = self._after_verified(room, cursor, last)
                if cursor.recovered:
                    arrived = {e["seq"] for e in room.pending if e.get("epoch") == cursor.epoch}
                    filled = 0
                    for event in events:
                        if event["seq"] == room.seq + 1 and event.get("epoch") == room.epoch:
                            room.seq = event["seq"]
                            self._fanout(room, event)
                            filled += event["seq"] not in arrived
                    if filled:
                        self._stats.gap_filled(filled)
                else:  # same epoch but an older seq: acknowledged changes were lost and seqs will be reused
                    self._reset(
                        room, cursor.epoch, cursor.seq, rewritten=cursor.epoch == room.epoch and cursor.seq < room.seq
                    )
                stale = {e.get("epoch") for e in earlier} - {room.epoch}
                room.retired.extend(e for e in stale if isinstance(e, str) and e not in room.retired)
                del room.retired[:-_RETIRED_EPOCHS]
                room.pending = []
                for event in sorted([*earlier, *later], key=_seq):
                    epoch = event.get("epoch")
                    if epoch in room.retired or event["seq"] <= room.seq and epoch == room.epoch:
                        continue
                    if epoch == room.epoch and event["seq"] == room.seq + 1:
                        room.seq = event["seq"]
                        self._fanout(room, event)
                    else:  # still a gap, or an epoch newer than this read: go round again
                        room.pending.append(event)
                if not room.pending and not room.refill:
                    return
        finally:
            room.filling = False

    async def _read_log(self, room: Room, since: tuple[str, int]) -> Cursor | None:
        """One change-log read for a fill; None (after a pause, with a refill due) if Redis can't answer.

        Logged once per outage of the room, not per retry.
        """
        try:
            async with self._fill_slots:
                cursor = await self._source.cursor(room.feed, since)
        except FeedError as exc:
            if not room.fill_failing:
                log.warning("cannot read the change log of %s yet (retrying): %s", room.feed, exc.detail)
            room.fill_failing = True
            await asyncio.sleep(_FILL_RETRY_DELAY)
            room.refill = True
            return None
        if room.fill_failing:
            room.fill_failing = False
            log.warning("change log of %s read again; its live events resume", room.feed)
        return cursor

    def _after_verified(self, room: Room, cursor: Cursor, last: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The cursor's events after ``room.seq``, once the log's entry at ``room.seq`` is ``last``.

        If it is another change (or the log no longer reaches back that far), the feed's history
        was rewritten: the room is reset and nothing from this read is delivered as a follow-on.
        """
        if not cursor.recovered:
            return []
        events = [orjson.loads(raw) for raw in cursor.events]
        if last is None:
            return events
        if events and events[0].get("seq") == room.seq and events[0] == last:
            return events[1:]
        self._reset(room, cursor.epoch, cursor.seq, rewritten=True)
        return []

    def _reset(self, room: Room, epoch: str, seq: int, *, rewritten: bool = False) -> None:
        """Tell the room's subscribers to reload; the room continues from (epoch, seq).

        ``rewritten``: the log holds another change at a seq this room delivered (a failover lost
        acknowledged writes), so every subscriber reloads, whatever its position.
        """
        log.warning(
            "feed %s: changes lost or history replaced (epoch %s seq %s → epoch %s seq %s%s); resetting subscribers",
            room.feed,
            room.epoch,
            room.seq,
            epoch,
            seq,
            ", acknowledged changes were lost" if rewritten else "",
        )
        room.last = None
        if room.epoch is not None and room.epoch != epoch and room.epoch not in room.retired:
            room.retired.append(room.epoch)
            del room.retired[:-_RETIRED_EPOCHS]
        room.epoch, room.seq = epoch, seq
        frame = protocol.reset(room.feed, epoch, seq)
        sent = sum(sub.reset(epoch, seq, frame, force=rewritten) for sub in list(room.subs.values()))
        self._stats.reset_sent(sent)

    def _fanout(self, room: Room, event: dict[str, Any]) -> None:
        """Encode the event once per kind and hand it to every subscriber allowed to see it."""
        room.last = event  # as logged: what rewritten-history detection compares with
        if self.decorate is not None:
            event = self.decorate(room.feed, event)
        feed, seq, kind, activity = room.feed, event["seq"], event["event"], event["activity"]
        epoch = room.epoch
        if follow_origin(activity) is not None:  # per-viewer rule of the origin feed
            for sub in list(room.subs.values()):
                if (out := _copy_event_for(sub.viewer, event)) is not None:
                    name, payload = out
                    self._send((sub,), epoch, seq, protocol.activity_frame(feed, seq, name, payload))
            return
        if kind == "updated":
            prev = event.get("prev")
            if prev is not None and not _same_visibility(prev, activity):
                before, after = set(room.recipients(prev)), set(room.recipients(activity))
                self._send(before & after, epoch, seq, protocol.activity_frame(feed, seq, "updated", activity))
                self._send(
                    before - after,
                    epoch,
                    seq,
                    protocol.activity_frame(feed, seq, "deleted", protocol.deleted_stub(activity)),
                )
                self._send(after - before, epoch, seq, protocol.activity_frame(feed, seq, "created", activity))
                return
        payload = protocol.deleted_stub(activity) if kind == "deleted" else activity
        self._send(room.recipients(activity), epoch, seq, protocol.activity_frame(feed, seq, kind, payload))

    def _send(self, subs: Iterable[Subscription], epoch: str | None, seq: int, frame: bytes) -> None:
        n = 0
        for sub in subs:
            sub.deliver(epoch, seq, frame)
            n += 1
        if n:
            self._stats.delivered(n)

    async def close(self) -> None:
        """Cancel background fills."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: PERF203 - shutting down
                pass


def _seq(event: Mapping[str, Any]) -> int:
    return int(event["seq"])


def _same_visibility(prev: Mapping[str, Any], activity: Mapping[str, Any]) -> bool:
    return actor_id(prev) == actor_id(activity) and (prev.get("audience") or []) == (activity.get("audience") or [])


__all__: Sequence[str] = ["Hub", "Peer", "Room", "Subscription", "event_for"]
