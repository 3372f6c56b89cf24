"""Every Redis key and channel name the server uses, defined in this one place.

All keys of one feed share the hash tag ``{<feed>}`` so that a feed's keys live in one slot of a
Redis Cluster and one Lua script can touch them all. Feed names are restricted to
``A-Z a-z 0-9 _ - : . @`` (see ``models.FEED_NAME``), so they can never contain a brace.

With the default prefix ``af:`` and feed ``booking:f4d1`` the keys are::

    af:{booking:f4d1}:meta   HASH    seq -> last change number, epoch -> random id of this history
    af:{booking:f4d1}:idx    ZSET    activity id, scored by its time in ms (ties: id order)
    af:{booking:f4d1}:acts   HASH    activity id -> encoded activity (the public JSON form)
    af:{booking:f4d1}:fid    ZSET    "<foreign_id>\\x00<time>\\x00<id>", all scores 0 (lex index)
    af:{booking:f4d1}:log    LIST    newest first: the last `resume_window` change events
    af:{booking:f4d1}:ch     channel pub/sub channel carrying the same change events
    af:{booking:f4d1}:vis2   HASH    activity id -> length-prefixed "actor verb audience-tokens" (models.visibility):
                                     what history reads filter on inside Redis, without decoding bodies
                                     (was ``vis``, "\x1f"-separated and forgeable: no longer read)
    af:{notifications:u-7}:seen   SET  ids of a notification feed's activities its owner has seen
    af:{notifications:u-7}:read   SET  … and has read (read implies seen)

Groups of an aggregated or notification feed (SPEC §12; ``server/aggregation.py``), folded
from the feed's change log, all in the feed's slot (``Keys.aggregation``)::

    af:{aggregated:1}:ag:meta  HASH  epoch, seq -> the feed change folded into the groups so far
    af:{aggregated:1}:ag:of    HASH  activity id -> "<group id>\\x00<actor>\\x00<time>"
    af:{aggregated:1}:ag:t     ZSET  activity id, scored by its time in ms (finds trimmed ones)
    af:{aggregated:1}:ag:m     ZSET  "<group id>\\x00<inverted ms>\\x00<inverted id>\\x00<id>", scores 0 (lex):
                                     each group's members, newest first
    af:{aggregated:1}:ag:g     HASH  group id -> {group, verb, n, a, ct, ut, cms, ums, zm} (JSON)
    af:{aggregated:1}:ag:z     ZSET  zm = "<updated ms>\\x00<newest id>\\x00<group id>", scores 0 (lex):
                                     the read order (newest group last)
    af:{aggregated:1}:ag:a     HASH  "<group id>\\x00<actor>" -> activities of that actor in the group
    af:{aggregated:1}:ag:unseen / ag:unread  SET  group ids not seen / not read since they last changed

Follows (SPEC §12; ``server/follows.py``), each key in the slot of the feed it belongs to::

    af:{user:1}:followers    ZSET    follower feed -> ms it started following user:1
    af:{timeline:2}:following ZSET   followed feed -> ms timeline:2 started following it
    af:{user:1}:fo           HASH    cursor -> last seq of user:1 copied to every follower
    af:{user:1}:folease      STRING  token of the fan-out worker holding user:1 (PX lease)
    af:{fanout}:jobs         STREAM  "feed" -> a followed feed with changes to copy (group "fanout")
    af:{fanout}:sources      ZSET    every feed with followers (the sweep repairs lost jobs from it)

Reactions (SPEC §12; ``server/reactions.py``) live in the slot of their activity's feed (the
origin feed for a copy), so adding one and logging its change event is one script::

    af:{user:1}:rx               HASH   reaction id -> reaction JSON
    af:{user:1}:rxi:<target>     ZSET   ids of the reactions to <target> (an activity or a parent
                                        reaction), all scores 0: ULIDs in lex order are time order
    af:{user:1}:rxi:<target>:<kind>  ZSET  … of one kind
    af:{user:1}:rxc:<target>     HASH   kind -> count
    af:{user:1}:rxu:<target>:<user>  ZSET  … by one user (own_reactions)
    af:{rx:<reaction id>}        STRING the feed holding the reaction (get/update/delete by id)
    af:{rxuser:<user>}           ZSET   a user's reaction ids (lex), and
    af:{rxuser:<user>}:feeds     HASH   reaction id -> feed

Users and collections (``server/objects.py``), one slot per object::

    af:{su:<id>}                 STRING user JSON {id, data, created_at, updated_at}
    af:{so:<collection>:<id>}    STRING collection object JSON
    af:{so:<collection>}:ids     ZSET   ids of a collection (listing)

A change event (what the log stores and the channel carries) is one JSON object built by the
write scripts: ``{"seq", "epoch", "event", "feed", "activity", "prev"}``; see ``lua/_common.lua``.
A notification feed's channel also carries ``{"counts": {"unseen", "unread"}}`` messages, which
have no seq and are not logged (``lua/marks.lua``).
"""

from __future__ import annotations

from typing import NamedTuple


class FeedKeys(NamedTuple):
    """The keys of one feed, in the order the Lua scripts expect them as ``KEYS``."""

    meta: str
    idx: str
    acts: str
    fid: str
    log: str
    channel: str
    vis: str


class Keys:
    """Builds key names under one prefix (tests give each run its own prefix)."""

    __slots__ = ("prefix", "_channel_head", "_cache", "_change_cache")

    def __init__(self, prefix: str = "af:") -> None:
        self.prefix = prefix
        self._channel_head = prefix + "{"
        self._cache: dict[str, FeedKeys] = {}
        self._change_cache: dict[str, tuple[str, ...]] = {}

    def feed(self, feed: str) -> FeedKeys:
        """All keys of ``feed`` (memoised: names are built on every write)."""
        keys = self._cache.get(feed)
        if keys is None:
            base = f"{self.prefix}{{{feed}}}:"
            keys = FeedKeys(
                base + "meta", base + "idx", base + "acts", base + "fid", base + "log", base + "ch", base + "vis2"
            )
            if len(self._cache) < 100_000:
                self._cache[feed] = keys
        return keys

    def change_keys(self, feed: str) -> tuple[str, ...]:
        """``KEYS`` of the change scripts (write, replace, delete): the feed's keys, then its
        ``followers`` and ``following`` (same slot): a change reports whether the feed has followers
        (the fan-out's wake-up needs no command of its own), and a follow copy is written only while
        the follow edge exists (``lua/write.lua``)."""
        keys = self._change_cache.get(feed)
        if keys is None:
            followers, following, _, _ = self.follows(feed)
            keys = (*self.feed(feed), followers, following)
            if len(self._change_cache) < 100_000:
                self._change_cache[feed] = keys
        return keys

    def channel(self, feed: str) -> str:
        """The pub/sub channel of ``feed``."""
        return self.feed(feed).channel

    def feed_of_channel(self, channel: str) -> str | None:
        """Inverse of ``channel``: the feed name, or None for a channel that is not ours."""
        if channel.startswith(self._channel_head) and channel.endswith("}:ch"):
            return channel[len(self._channel_head) : -4]
        return None

    def notification_marks(self, feed: str) -> tuple[str, str]:
        """The (seen, read) id sets of a notification feed (same slot as the feed's other keys)."""
        base = f"{self.prefix}{{{feed}}}:"
        return base + "seen", base + "read"

    def aggregation(self, feed: str) -> tuple[str, ...]:
        """The group keys of an aggregated or notification feed (its slot; see the table above)."""
        base = f"{self.prefix}{{{feed}}}:ag:"
        return tuple(base + k for k in ("meta", "of", "t", "m", "g", "z", "a", "unseen", "unread"))

    def follows(self, feed: str) -> tuple[str, str, str, str]:
        """(followers, following, fan-out state, fan-out lease) of ``feed`` (all in its slot)."""
        base = f"{self.prefix}{{{feed}}}:"
        return base + "followers", base + "following", base + "fo", base + "folease"

    def fanout(self) -> tuple[str, str]:
        """(job stream, sources set) of the follow fan-out: one slot of their own."""
        base = f"{self.prefix}{{fanout}}:"
        return base + "jobs", base + "sources"

    def reactions(self, feed: str, target: str, kind: str = "", user: str = "") -> tuple[str, str, str, str, str]:
        """(bodies, index of ``target``, its index of ``kind``, its counts, its index of ``user``)."""
        base = f"{self.prefix}{{{feed}}}:"
        return (
            base + "rx",
            f"{base}rxi:{target}",
            f"{base}rxi:{target}:{kind}",
            f"{base}rxc:{target}",
            f"{base}rxu:{target}:{user}",
        )

    def reaction_parents(self, feed: str) -> str:
        """HASH reaction id -> how many child reactions it has (absent: none), in ``feed``'s slot."""
        return f"{self.prefix}{{{feed}}}:rxh"

    def reaction_summaries(self, feed: str) -> str:
        """HASH activity id -> its cached reaction counts and latest reactions (``lua/reaction_read.lua``)."""
        return f"{self.prefix}{{{feed}}}:rxs"

    def reaction_locator(self, reaction_id: str) -> str:
        """Where reaction ``reaction_id`` lives (its feed's name)."""
        return f"{self.prefix}{{rx:{reaction_id}}}"

    def user_reactions(self, user: str) -> tuple[str, str]:
        """(ids, id -> feed) of a user's reactions."""
        base = f"{self.prefix}{{rxuser:{user}}}"
        return base, base + ":feeds"

    def user_object(self, user_id: str) -> str:
        """A stored user (``SU:<id>``)."""
        return f"{self.prefix}{{su:{user_id}}}"

    def collection_object(self, collection: str, object_id: str) -> str:
        """A stored collection object (``SO:<collection>:<id>``)."""
        return f"{self.prefix}{{so:{collection}:{object_id}}}"

    def getstream_index(self, app: str) -> tuple[str, str]:
        """The GetStream dialect's lookup hashes of app ``app`` (``dialects/getstream/index.py``):
        ``ids`` (activity id → the feeds holding it, space-separated) and ``fids``
        (``"<foreign_id>\\x00<time>"`` → the same), since GetStream addresses activities without a feed."""
        base = f"{self.prefix}{{gs:{app}}}:"
        return base + "ids", base + "fids"

    def bayeux_client(self, client_id: str) -> tuple[str, str, str]:
        """A Bayeux (Faye) client's keys, one slot (``dialects/bayeux.py``): ``meta`` HASH (created,
        ``h:<channel>`` → the process holding that subscription), ``queue`` LIST of messages waiting
        for a ``/meta/connect`` (bounded), ``subs`` SET of channels. All expire when the client stays
        silent for the configured TTL."""
        base = f"{self.prefix}{{bx:{client_id}}}:"
        return base + "meta", base + "queue", base + "subs"

    def bayeux_node(self, node: str) -> str:
        """Heartbeat of a process holding Bayeux subscriptions (STRING with a short TTL): a client
        whose subscriptions are held by a process whose heartbeat is gone must handshake again."""
        return f"{self.prefix}{{bxnode:{node}}}"

    def readiness_channel(self, token: str) -> str:
        """A throwaway channel used by ``/readyz`` to prove the pub/sub path round-trips."""
        return f"{self.prefix}{{readyz}}:{token}"
