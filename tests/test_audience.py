"""Every audience type decides who gets the live push, the history entry and the single read."""

from __future__ import annotations

from conftest import nothing_more, recv, send, subscribe

FEED = "public:aud"

# who -> (sub or None for anonymous, feeds claim, roles)
PRINCIPALS = {
    "anon": (None, None, []),
    "stranger": ("stranger", {"public:*": ["read"]}, []),
    "member": ("member", {"public:*": ["member"]}, []),
    "target": ("u-7", {"public:*": ["read"]}, []),
    "accountant": ("acc", {"public:*": ["read"]}, ["accounting"]),
    "admin": ("boss", {"public:*": ["admin"]}, []),
    "author": ("author", {"public:*": ["write"]}, []),
}

AUDIENCES = {
    "public": ["public"],
    "everyone": ["everyone"],
    "members": ["members"],
    "identity": ["identity:u-7"],
    "role": [{"type": "role", "id": "accounting"}],
    "private": [],
}

EXPECTED = {
    "public": {"anon", "stranger", "member", "target", "accountant", "admin", "author"},
    "everyone": {"stranger", "member", "target", "accountant", "admin", "author"},
    "members": {"member", "admin", "author"},
    "identity": {"target", "admin", "author"},
    "role": {"accountant", "admin", "author"},
    "private": {"admin", "author"},
}


def _tokens(server):
    out = {}
    for who, (sub, feeds, roles) in PRINCIPALS.items():
        out[who] = server.token(sub, feeds, roles=roles) if sub else None
    return out


async def test_push_history_and_single_read_follow_the_audience(server):
    """Each principal receives, lists and can fetch exactly the activities its audience admits."""
    tokens = _tokens(server)
    sockets = {}
    for who, token in tokens.items():
        sockets[who] = await server.ws(token) if token else await server.ws()
        await subscribe(sockets[who], FEED)

    author = server.http(tokens["author"])
    ids = {}
    for name, audience in AUDIENCES.items():
        r = await author.post(
            f"/v1/feeds/{FEED}/activities", json={"verb": "post", "object": name, "audience": audience}
        )
        assert r.status_code == 201, r.text
        ids[name] = r.json()["activities"][0]["id"]

    for who, ws in sockets.items():
        seen, seqs = [], []
        expected = {name for name, whom in EXPECTED.items() if who in whom}
        for _ in expected:
            event = await recv(ws)
            assert event["type"] == "activity" and event["event"] == "created"
            seen.append(event["activity"]["object"])
            seqs.append(event["seq"])
        await nothing_more(ws)
        assert set(seen) == expected, who
        assert seqs == sorted(seqs), who  # in seq order; hidden ones are skipped, not reordered

    for who, token in tokens.items():
        http = server.http(token)
        listed = {a["object"] for a in (await http.get(f"/v1/feeds/{FEED}/activities")).json()["results"]}
        expected = {name for name, whom in EXPECTED.items() if who in whom}
        assert listed == expected, who
        for name, activity_id in ids.items():
            r = await http.get(f"/v1/feeds/{FEED}/activities/{activity_id}")
            assert r.status_code == (200 if name in expected else 404), (who, name)
            if r.status_code == 404:
                assert r.headers["content-type"] == "application/problem+json"


async def test_hidden_and_missing_look_the_same(server):
    """A hidden activity's 404 is identical to an unknown id's 404 (apart from the id)."""
    tokens = _tokens(server)
    author = server.http(tokens["author"])
    r = await author.post(f"/v1/feeds/{FEED}/activities", json={"verb": "v", "object": "o", "audience": []})
    hidden_id = r.json()["activities"][0]["id"]
    stranger = server.http(tokens["stranger"])
    hidden = await stranger.get(f"/v1/feeds/{FEED}/activities/{hidden_id}")
    missing = await stranger.get(f"/v1/feeds/{FEED}/activities/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert hidden.status_code == missing.status_code == 404
    strip = lambda p: {k: v for k, v in p.items() if k not in ("detail", "instance")}  # noqa: E731
    assert strip(hidden.json()) == strip(missing.json())


async def test_default_audience_is_members(server):
    """Without an audience the configured default (members) applies."""
    tokens = _tokens(server)
    r = await server.http(tokens["author"]).post(f"/v1/feeds/{FEED}/activities", json={"verb": "v", "object": "o"})
    assert r.json()["activities"][0]["audience"] == [{"type": "members"}]


async def test_anonymous_sees_only_public_feeds(server):
    """Anonymous callers read public feeds only; other feeds need credentials."""
    anon = await server.ws()
    await subscribe(anon, "public:x")
    await send(anon, {"type": "subscribe", "feed": "private:x", "ref": 1})
    error = await recv(anon)
    assert error["type"] == "error" and error["ref"] == 1 and error["code"] in ("unauthorized", "forbidden")
    r = await server.http().get("/v1/feeds/private:x/activities")
    assert r.status_code == 401
    assert (await server.http().get("/v1/feeds/public:x/activities")).status_code == 200


async def test_history_filter_in_redis_matches_can_see(server, redis_url):
    """The read script's filter agrees with Viewer.can_see on combined audiences, verb/actor
    filters, and activities stored without a visibility line (read from their bodies)."""
    import itertools

    import redis.asyncio as aioredis

    from server.acl import Principal, parse_feed_rights

    feed = "public:mix"
    entries = ["public", "everyone", "members", "identity:u-7", "role:ops", "role:acc"]
    audiences = [[]] + [list(c) for n in (1, 2) for c in itertools.combinations(entries[1:], n)]
    writers = {
        "author": server.http(server.token("author", {"public:*": ["write"]})),
        "other": server.http(server.token("other", {"public:*": ["write"]})),
    }
    docs = []
    for i, audience in enumerate(audiences):
        who = "author" if i % 2 else "other"
        r = await writers[who].post(
            f"/v1/feeds/{feed}/activities",
            json={"verb": "v" if i % 3 else "w", "object": f"o:{i}", "audience": audience},
        )
        docs.append(r.json()["activities"][0])
    client = aioredis.Redis.from_url(redis_url)  # half of them lose their visibility line
    await client.hdel(server.app.keys.feed(feed).vis, *[d["id"] for d in docs[::2]])
    await client.aclose()
    viewers = {
        "anon": (None, None, []),
        "stranger": ("s", {"public:*": ["read"]}, []),
        "member": ("m", {"public:*": ["member"]}, []),
        "target": ("u-7", {"public:*": ["read"]}, []),
        "ops": ("o", {"public:*": ["read"]}, ["ops", "x"]),
        "author": ("author", {"public:*": ["read"]}, []),
        "admin": ("boss", {"public:*": ["admin"]}, []),
    }
    for name, (sub, feeds, roles) in viewers.items():
        principal = Principal(
            sub=sub, feeds=parse_feed_rights(feeds or {}), roles=frozenset(roles), public_feeds=("public:*",)
        )
        http = server.http(server.token(sub, feeds, roles=roles) if sub else None)
        for query in ("", "&verb=w", "&actor=author", "&verb=v&actor=other"):
            got = [a["id"] for a in (await http.get(f"/v1/feeds/{feed}/activities?limit=100{query}")).json()["results"]]
            expected = [
                d["id"]
                for d in reversed(docs)
                if principal.viewer(feed).can_see(d)
                and ("verb=w" not in query or d["verb"] == "w")
                and ("verb=v" not in query or d["verb"] == "v")
                and ("actor=author" not in query or d["actor"]["id"] == "author")
                and ("actor=other" not in query or d["actor"]["id"] == "other")
            ]
            assert got == expected, (name, query)
