"""A read that leaves activities out says how many (``hidden``), never which."""

from __future__ import annotations

FEED = "booking:h1"


async def test_page_counts_hidden_activities_without_revealing_them(server):
    """A reader outside the audience gets hidden = n and no trace of them; members and admins get 0."""
    author = server.http(server.token("alice", {"booking:*": ["read", "write", "member"]}))
    for i in range(3):
        r = await author.post(f"/v1/feeds/{FEED}/activities", json={"verb": "secret", "object": f"s{i}"})
        assert r.status_code == 201
    r = await author.post(f"/v1/feeds/{FEED}/activities", json={"verb": "open", "object": "p", "audience": ["public"]})
    assert r.status_code == 201

    reader = server.http(server.token("bob", {"booking:*": ["read"]}))  # not a member: "members" hides from bob
    page = (await reader.get(f"/v1/feeds/{FEED}/activities")).json()
    assert [a["object"] for a in page["results"]] == ["p"] and page["hidden"] == 3
    assert "secret" not in str(page) and "s0" not in str(page)
    filtered = (await reader.get(f"/v1/feeds/{FEED}/activities", params={"verb": "open"})).json()
    assert filtered["hidden"] == 0  # only what matches the filters counts

    member = server.http(server.token("carol", {"booking:*": ["read", "member"]}))
    assert (await member.get(f"/v1/feeds/{FEED}/activities")).json()["hidden"] == 0
    admin = server.http(server.token("ops", {"booking:*": ["admin"]}))
    assert (await admin.get(f"/v1/feeds/{FEED}/activities")).json()["hidden"] == 0
