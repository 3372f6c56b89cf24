"""The WebSocket message codec (SPEC §5), without I/O."""

from __future__ import annotations

import orjson
import pytest

from server import protocol
from server.errors import BadRequest, Invalid


def test_parse_known_commands():
    """Each client message type parses into its command."""
    assert isinstance(protocol.parse_command('{"type":"ping","ref":"1"}'), protocol.Ping)
    sub = protocol.parse_command('{"type":"subscribe","feed":"f","since":{"seq":3,"epoch":"e"}}')
    assert isinstance(sub, protocol.Subscribe) and sub.since.seq == 3
    pub = protocol.parse_command('{"type":"publish","feed":"f","activities":[{"verb":"v"}]}')
    assert pub.items() == [{"verb": "v"}]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("{not json", BadRequest),
        ("[1,2]", BadRequest),
        ('{"type":"dance"}', Invalid),
        ('{"type":"subscribe"}', Invalid),
        ('{"type":"subscribe","feed":"bad feed"}', Invalid),
        ('{"type":"subscribe","feed":"f","since":{"seq":-1,"epoch":"e"}}', Invalid),
    ],
)
def test_bad_messages(raw, error):
    """Malformed JSON is a bad request; a wrong command is invalid."""
    with pytest.raises(error):
        protocol.parse_command(raw)


def test_publish_needs_one_of_activity_or_activities():
    """'activity' and 'activities' are exclusive, and one is required."""
    with pytest.raises(Invalid):
        protocol.parse_command('{"type":"publish","feed":"f"}').items()
    with pytest.raises(Invalid):
        protocol.parse_command('{"type":"publish","feed":"f","activity":{},"activities":[]}').items()


def test_peek_ref_of_a_failed_message():
    """A reply to a message that failed validation still echoes its ref."""
    assert protocol.peek_ref('{"type":"dance","ref":"abc"}') == "abc"
    assert protocol.peek_ref("{broken") is None


def test_ack_splices_stored_bodies():
    """Acks embed stored activity JSON as is."""
    frame = protocol.ack([b'{"id":"1"}', b'{"id":"2"}'], "r")
    assert orjson.loads(frame) == {"type": "ack", "ref": "r", "activities": [{"id": "1"}, {"id": "2"}]}


def test_event_frames():
    """Activity, reset and subscribed frames carry the fields of SPEC §5."""
    assert orjson.loads(protocol.activity_frame("f", 3, "created", {"id": "a"})) == {
        "type": "activity",
        "feed": "f",
        "seq": 3,
        "event": "created",
        "activity": {"id": "a"},
    }
    assert orjson.loads(protocol.reset("f", "e2", 7)) == {"type": "reset", "feed": "f", "epoch": "e2", "seq": 7}
    assert orjson.loads(protocol.subscribed("f", 4, "e", False, 7))["ref"] == 7
