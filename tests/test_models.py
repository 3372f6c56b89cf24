"""Activity validation and encoding (SPEC §2), without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.errors import Invalid
from server.models import (
    IdGenerator,
    build_body,
    check_feed_name,
    format_time,
    parse_activity,
    parse_audience,
    time_ms,
    ulid_ms,
)


def test_ulid_encodes_time_and_sorts_by_it():
    """Ids are ULIDs of the activity time, so id order is time order."""
    t1 = datetime(2026, 1, 14, 9, 30, 0, 123000, tzinfo=UTC)
    t2 = datetime(2026, 1, 14, 9, 30, 0, 124000, tzinfo=UTC)
    a, b = IdGenerator()(time_ms(t1)), IdGenerator()(time_ms(t2))
    assert ulid_ms(a) == time_ms(t1) == 1768383000123
    assert a < b
    assert ulid_ms("not-a-ulid") is None


def test_time_is_utc_with_milliseconds():
    """Times are stored in UTC with millisecond precision."""
    a = parse_activity({"verb": "v", "object": "o", "time": "2026-01-14T10:30:00.123456+01:00"})
    assert format_time(a.time) == "2026-01-14T09:30:00.123Z"


def test_audience_shorthand_and_object_forms():
    """Shorthand strings become the object form; notify only when true."""
    assert parse_audience(["public", "identity:u-7", {"type": "role", "id": "acc", "notify": True}]) == [
        {"type": "public"},
        {"type": "identity", "id": "u-7"},
        {"type": "role", "id": "acc", "notify": True},
    ]


@pytest.mark.parametrize("audience", [["identity"], ["nobody"], [{"type": "public", "id": "x"}], "public"])
def test_bad_audience_is_refused(audience):
    """identity/role need an id, others take none, unknown types and non-lists are refused."""
    with pytest.raises(Invalid):
        parse_activity({"verb": "v", "object": "o", "audience": audience})


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ({"object": "o"}, "verb"),
        ({"verb": "v"}, "object"),
        ({"verb": "v" * 256, "object": "o"}, "verb"),
        ({"verb": "é" * 128, "object": "o"}, "verb"),  # 256 bytes
        ({"verb": "v", "object": {"type": "booking"}}, "object"),
        ({"verb": "v", "object": "o", "attachments": [{"type": "file"}]}, "attachments.0"),
        ({"verb": "v", "object": "o", "attachments": [{"type": "gif", "id": "x"}]}, "attachments.0.type"),
        ({"verb": "v", "object": "o", "changes": {"title": {"before": 1}}}, "changes.title.before"),
        ({"verb": "v", "object": "o", "template": "{{user} did"}, "template"),
        ({"verb": "v", "object": "o", "template_data": {"a": 1}}, ""),
        ({"verb": "v", "object": "o", "to": ["bad feed"]}, "to.0"),
        ({"verb": "v", "object": "o", "time": "yesterday"}, "time"),
    ],
)
def test_invalid_fields_are_listed(raw, loc):
    """Each invalid field is reported with its location."""
    with pytest.raises(Invalid) as info:
        parse_activity(raw)
    assert loc in [e["loc"] for e in info.value.errors]


@pytest.mark.parametrize("name", ["score", "is_read", "origin", "activity_id", "epoch", "analytics"])
def test_reserved_names_are_refused(name):
    """Reserved names cannot be custom fields."""
    with pytest.raises(Invalid) as info:
        parse_activity({"verb": "v", "object": "o", name: 1})
    assert name in info.value.detail


def test_custom_and_server_owned_fields():
    """Custom fields are stored as given; server-owned fields on input are ignored (id/version kept)."""
    raw = {
        "verb": "v",
        "object": "o",
        "course": {"x": [1, 2]},
        "note": None,
        "text": None,
        "seq": 9,
        "feed": "f",
        "created_at": "x",
        "id": "my-id",
        "version": 3,
    }
    a = parse_activity(raw)
    assert a.id == "my-id" and a.version == 3
    body = build_body(a, raw, feed="real", actor={"id": "u"}, audience=[], time="t", updated_at="u")
    assert body == {
        "feed": "real",
        "actor": {"id": "u"},
        "verb": "v",
        "object": "o",
        "course": {"x": [1, 2]},
        "note": None,
        "time": "t",
        "audience": [],
        "updated_at": "u",
    }


def test_well_known_fields_validate():
    """The well-known optional fields of SPEC §2 are accepted in their documented shapes."""
    a = parse_activity(
        {
            "verb": "comment.add",
            "object": {"id": "f4d1", "type": "booking"},
            "target": {"id": "annotation-789", "sub_id": "comment-001"},
            "template": "{{user.name}} added a comment",
            "template_data": {"user": {"name": "U"}},
            "attachments": [
                {"type": "file", "id": "a.pdf"},
                {"type": "link", "url": "https://x"},
                {"type": "video", "url": "https://v"},
            ],
            "changes": {"commentText": {"from": "a", "to": "b"}},
            "emotion": "fire",
            "icon": "comment",
            "i18n_key": "ACTIVITY.X",
            "text": "t",
            "foreign_id": "comment:1",
            "to": ["notifications:u7"],
        }
    )
    assert a.target.sub_id == "comment-001"


@pytest.mark.parametrize("feed", ["", "a b", "x" * 129, "feed/1", "{f}", "é"])
def test_bad_feed_names(feed):
    """Feed names are 1-128 chars of A-Z a-z 0-9 _ - : . @."""
    with pytest.raises(Invalid):
        check_feed_name(feed)


def test_good_feed_names():
    """The examples of SPEC §1 are valid."""
    for feed in ("booking:f4d1c8e5", "org-123:doc-456", "user:42", "a.b@c_d", "x" * 128):
        assert check_feed_name(feed) == feed


def test_ids_of_one_millisecond_increase():
    """An IdGenerator hands out increasing ids within a millisecond (batches keep their order)."""
    gen = IdGenerator()
    t = datetime(2026, 1, 14, 9, 30, 0, 123000, tzinfo=UTC)
    ids = [gen(time_ms(t)) for _ in range(200)]
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert {ulid_ms(i) for i in ids} == {time_ms(t)}
    earlier = gen(time_ms(datetime(2026, 1, 14, 9, 29, tzinfo=UTC)))
    assert ulid_ms(earlier) < time_ms(t)  # another millisecond: a fresh random id with its own time


def test_generated_ids_are_valid_ulids_of_their_time():
    """Ids parse as ULIDs (python-ulid) whose timestamp is the activity time; carries roll over."""
    from ulid import ULID

    from server.models import _increment

    gen = IdGenerator()
    for ms in (0, 1, 1768383000123, 2**48 - 1):
        dt = datetime.fromtimestamp(ms / 1000, UTC) if ms < 2**47 else None
        if dt is None:
            continue
        value = gen(time_ms(dt))
        assert len(value) == 26 and ULID.from_str(value).milliseconds == time_ms(dt)
    assert _increment("0ZZ") == "100" and _increment("ZZ") is None and _increment("A0") == "A1"
