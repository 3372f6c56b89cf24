"""The AsyncAPI 3.0 description of /v1/ws: valid AsyncAPI, complete, and true of the frames sent."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from conftest import ROOT, recv, recv_until, send, subscribe
from jsonschema import Draft7Validator, Draft202012Validator
from pydantic import TypeAdapter

from server import protocol
from server.asyncapi import AsyncApi
from server.errors import Invalid, PreconditionFailed, Unavailable
from server.protocol_models import SERVER_MESSAGES, ServerMessage

#: The official AsyncAPI 3.0.0 JSON schema (npm @asyncapi/specs 6.11.1, tests/data/README.md).
ASYNCAPI_SCHEMA = json.loads((ROOT / "tests" / "data" / "asyncapi-3.0.0.schema.json").read_text())
SERVER_MESSAGE = TypeAdapter(ServerMessage)
FEED = "room:contract"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return AsyncApi().document("localhost:8000")


def test_document_is_valid_asyncapi_3(doc):
    """The generated document validates against the official AsyncAPI 3.0.0 JSON schema."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft7Validator(ASYNCAPI_SCHEMA).iter_errors(doc)]
    assert errors == []
    broken = {"asyncapi": "3.0.0", "info": {"title": "x"}}  # the check can fail: version is required
    assert list(Draft7Validator(ASYNCAPI_SCHEMA).iter_errors(broken))


def test_every_message_of_the_protocol_is_described(doc):
    """Each client command is a receive operation with its replies; each server frame is a message."""
    ops = doc["operations"]
    assert {n for n, op in ops.items() if op["action"] == "receive"} == set(protocol._COMMANDS)
    titles = {m["title"] for m in doc["components"]["messages"].values()}
    assert {m.__name__ for m in SERVER_MESSAGES} <= titles
    assert {n for n, op in ops.items() if op["action"] == "send"} == {"activityEvent", "reset", "notificationCounts"}
    assert doc["channels"]["feeds"]["address"] == "/v1/ws"
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):  # every reference resolves
        node: Any = doc
        for key in ref.split("/"):
            node = node[key]
    Draft202012Validator.check_schema({"$defs": doc["components"]["schemas"]})


def payload_validator(doc: dict[str, Any]) -> Draft202012Validator:
    """Validates a frame against the payloads of every server-sent message of the document."""
    names = {_ref(r) for op in doc["operations"].values() for r in _sent(op)}
    schema = {"anyOf": [doc["components"]["messages"][n]["payload"] for n in sorted(names)]}
    return Draft202012Validator({**schema, "components": doc["components"]})


def _ref(ref: dict[str, str]) -> str:
    return ref["$ref"].rsplit("/", 1)[1]


def _sent(op: dict[str, Any]) -> list[dict[str, str]]:
    return op["messages"] if op["action"] == "send" else op.get("reply", {}).get("messages", [])


def check_frame(doc: dict[str, Any], raw: bytes | str) -> None:
    """A frame the server built fits the model and the AsyncAPI payload schemas."""
    SERVER_MESSAGE.validate_json(raw)
    errors = [e.message for e in payload_validator(doc).iter_errors(orjson.loads(raw))]
    assert errors == [], (raw, errors)


def test_hand_encoded_frames_fit_the_models(doc):
    """Every frame builder of protocol.py (the fast path's hand encoding) produces a valid message."""
    stored = orjson.dumps(
        {
            "id": "01KAZ8Y0A1B2C3D4E5F6G7H8J9",
            "feed": FEED,
            "actor": {"id": "alice"},
            "verb": "v",
            "object": "o",
            "time": "2026-01-14T09:30:00.000Z",
            "audience": [{"type": "members"}],
            "updated_at": "2026-01-14T09:30:00.000Z",
            "seq": 3,
            "version": 1,
            "created_at": "2026-01-14T09:30:00.000Z",
        }
    )
    frames = [
        protocol.welcome("alice", 1),
        protocol.welcome(None),
        protocol.subscribed(FEED, 3, "e1", True, "r"),
        protocol.unsubscribed(FEED),
        protocol.pong(7),
        protocol.ack([stored, stored], 2),
        protocol.ack([], 3, removed=2),
        protocol.error(Invalid("bad", errors=[{"loc": "feed", "msg": "m", "type": "t"}]), 4),
        protocol.error(Unavailable("down", retry_after=1.0)),
        protocol.error(PreconditionFailed("stale", extra={"version": 3})),
        protocol.reset(FEED, "e1", 9),
        protocol.activity_frame(FEED, 4, "created", orjson.loads(stored)),
        protocol.activity_frame(FEED, 5, "deleted", protocol.deleted_stub(orjson.loads(stored))),
        protocol.notification_counts("notifications:alice", 2, 1),
    ]
    for frame in frames:
        check_frame(doc, frame)
    with pytest.raises(ValueError):  # the check can fail (pydantic's ValidationError is a ValueError)
        check_frame(doc, b'{"type":"pong","extra":1}')
    assert list(payload_validator(doc).iter_errors({"type": "pong", "extra": 1}))


async def test_real_frames_fit_the_description(server):
    """Frames a real server sends in a session (replies, events, errors, counts) validate against /asyncapi.json."""
    doc = (await server.http().get("/asyncapi.json")).json()
    assert doc["servers"]["this"]["host"] == f"127.0.0.1:{server.settings.server.port}"
    rights = {"room:*": ["read", "write", "member"]}
    alice = await server.ws()
    await send(alice, {"type": "auth", "token": server.token("alice", rights, name="Alice"), "ref": "a"})
    frames = [await recv(alice)]
    await send(alice, {"type": "subscribe", "feed": FEED, "ref": 1})
    frames.append(await recv(alice))
    bob = await server.ws(server.token("bob", {"room:*": ["read"]}))
    await subscribe(bob, "notifications:bob")
    note = {"verb": "v", "object": "o", "audience": ["members", {"type": "identity", "id": "bob", "notify": True}]}
    await send(alice, {"type": "publish", "feed": FEED, "activity": note, "ref": 2})
    frames.append(await recv_until(alice, "ack"))
    frames.append(await recv_until(bob, "activity"))
    activity_id = frames[-2]["activities"][0]["id"]
    await send(alice, {"type": "update", "feed": FEED, "id": activity_id, "activity": {"verb": "v2", "object": "o"}})
    frames.append(await recv_until(alice, "ack"))
    await send(alice, {"type": "patch", "feed": FEED, "id": activity_id, "set": {"text": "t"}, "version": 1})
    frames.append(await recv_until(alice, "error"))  # stale version
    await send(alice, {"type": "delete", "feed": FEED, "id": activity_id})
    frames.append(await recv_until(alice, "ack"))
    await send(alice, {"type": "nope"})
    frames.append(await recv_until(alice, "error"))
    await send(alice, {"type": "ping", "ref": 9})
    frames.append(await recv_until(alice, "pong"))
    await send(alice, {"type": "unsubscribe", "feed": FEED})
    frames.append(await recv_until(alice, "unsubscribed"))
    bob_http = server.http(server.token("bob", {"room:*": ["read"]}))
    assert (await bob_http.post("/v1/notifications/seen", json={"all": True})).status_code == 200
    frames.append(await recv_until(bob, "notifications"))
    kinds = {f["type"] for f in frames}
    assert kinds >= {"welcome", "subscribed", "ack", "activity", "error", "pong", "unsubscribed", "notifications"}
    for frame in frames:
        check_frame(doc, orjson.dumps(frame))


def test_close_codes_of_errors_are_described(doc):
    """Every FeedError that carries a WebSocket close code has it listed in the description."""
    from server import errors

    codes = {
        cls.close_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.FeedError) and cls.close_code is not None
    }
    assert codes >= {4001, 4029} and {str(c) for c in codes} <= set(doc["x-close-codes"])
