"""The AsyncAPI 3.0 description of the WebSocket protocol (``/v1/ws``), served at ``/asyncapi.json``.

Generated from the message models: the client's commands (``protocol.py``) and the server's
frames (``protocol_models.py``). Operations are from the server's point of view: it *receives*
the client's commands (each with its reply) and *sends* events.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from . import __version__, protocol
from .protocol_models import (
    Ack,
    ActivityEvent,
    Error,
    NotificationCounts,
    Pong,
    Reset,
    Subscribed,
    Unsubscribed,
    Welcome,
)

REF = "#/components/schemas/{model}"
CHANNEL = "feeds"

#: client command → (its model, the replies it gets, what it does, an example).
COMMANDS: dict[str, tuple[type[BaseModel], tuple[type[BaseModel], ...], str, dict[str, Any]]] = {
    "auth": (
        protocol.Auth,
        (Welcome, Error),
        "Authenticate the connection with a JWT (first message, unless the handshake had credentials)",
        {"type": "auth", "token": "<JWT>", "ref": 1},
    ),
    "subscribe": (
        protocol.Subscribe,
        (Subscribed, Error),
        "Receive the feed's events; with since, first the changes missed after that cursor",
        {"type": "subscribe", "feed": "booking:f4d1", "since": {"seq": 41, "epoch": "01KAZ8Y0"}, "ref": 2},
    ),
    "unsubscribe": (
        protocol.Unsubscribe,
        (Unsubscribed, Error),
        "Stop receiving the feed's events",
        {"type": "unsubscribe", "feed": "booking:f4d1"},
    ),
    "publish": (
        protocol.Publish,
        (Ack, Error),
        "Add one activity (activity) or a batch (activities), as POST /v1/feeds/{feed}/activities",
        {"type": "publish", "feed": "booking:f4d1", "activity": {"verb": "comment", "object": "f4d1"}, "ref": 3},
    ),
    "update": (
        protocol.Update,
        (Ack, Error),
        "Replace an activity, as PUT (version: optional precondition)",
        {"type": "update", "feed": "booking:f4d1", "id": "01KAZ8Y0A1B2C3D4E5F6G7H8J9", "activity": {"verb": "v"}},
    ),
    "patch": (
        protocol.Patch,
        (Ack, Error),
        "Set/unset dotted paths of an activity, as PATCH",
        {"type": "patch", "feed": "booking:f4d1", "id": "01KAZ8Y0A1B2C3D4E5F6G7H8J9", "set": {"text": "edited"}},
    ),
    "delete": (
        protocol.Delete,
        (Ack, Error),
        "Remove an activity by id, or every activity with a foreign_id",
        {"type": "delete", "feed": "booking:f4d1", "id": "01KAZ8Y0A1B2C3D4E5F6G7H8J9"},
    ),
    "ping": (
        protocol.Ping,
        (Pong,),
        "Check the connection (the server also pings idle ones)",
        {"type": "ping", "ref": 4},
    ),
}

#: Frames the server sends without being asked.
EVENTS: tuple[type[BaseModel], ...] = (ActivityEvent, Reset, NotificationCounts)

CLOSE_CODES = {
    "1008": "Origin not allowed (browser handshakes get HTTP 403)",
    "1009": "A frame over [server] max_frame_bytes",
    "1012": "Server restarting",
    "4001": "Unauthenticated: bad or expired token, or no auth message within auth_timeout",
    "4003": "Forbidden (the close code of a forbidden error, when one ends a connection)",
    "4008": "Slow consumer: the bounded outbound queue overflowed",
    "4029": "Rate limited: over [server] ws_rate_limit",
}


def _name(model: type[BaseModel]) -> str:
    return model.__name__[0].lower() + model.__name__[1:]


class AsyncApi:
    """Builds the AsyncAPI document; ``document(host)`` names the server it is served from."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        for kind, (model, replies, summary, example) in COMMANDS.items():
            self._message(kind, model, example, summary)
            for reply in replies:
                self._message(_name(reply), reply)
        for event in EVENTS:
            self._message(_name(event), event)

    def _message(
        self, name: str, model: type[BaseModel], example: dict[str, Any] | None = None, summary: str = ""
    ) -> None:
        if name in self.messages:
            return
        schema = model.model_json_schema(ref_template=REF)
        for def_name, definition in schema.pop("$defs", {}).items():
            self.schemas.setdefault(def_name, definition)
        self.schemas[model.__name__] = schema
        doc = (model.__doc__ or "").strip()
        message: dict[str, Any] = {
            "name": name,
            "title": model.__name__,
            "summary": summary or doc.split("\n")[0],
            "contentType": "application/json",
            "payload": {"$ref": REF.format(model=model.__name__)},
        }
        if example is not None:
            message["examples"] = [{"payload": example}]
        self.messages[name] = message

    def document(self, host: str = "localhost:8000") -> dict[str, Any]:
        """The AsyncAPI 3.0.0 document for a server reachable at ``host``."""
        channel_ref = {"$ref": f"#/channels/{CHANNEL}"}

        def msg(name: str) -> dict[str, str]:
            return {"$ref": f"#/channels/{CHANNEL}/messages/{name}"}

        operations: dict[str, Any] = {}
        for kind, (_, replies, summary, _) in COMMANDS.items():
            operations[kind] = {
                "action": "receive",
                "channel": channel_ref,
                "title": f"{kind} command",
                "summary": summary,
                "messages": [msg(kind)],
                "reply": {"channel": channel_ref, "messages": [msg(_name(r)) for r in replies]},
            }
        for event in EVENTS:
            name = _name(event)
            operations[name] = {
                "action": "send",
                "channel": channel_ref,
                "title": event.__name__,
                "summary": (event.__doc__ or "").strip().split("\n")[0],
                "messages": [msg(name)],
            }
        return {
            "asyncapi": "3.0.0",
            "info": {
                "title": "Activity feed server: WebSocket protocol",
                "version": __version__,
                "description": "JSON text frames on one WebSocket per client. Every client message may carry "
                "`ref` (a string or a number); its reply echoes it. Authenticate in the handshake "
                "(`Authorization: Bearer <JWT>`) or with an `auth` message first. Close codes are listed "
                "in `x-close-codes`. The HTTP API is described at [/openapi.json](/openapi.json).",
            },
            "x-close-codes": CLOSE_CODES,
            "defaultContentType": "application/json",
            "servers": {
                "this": {
                    "host": host,
                    "protocol": "ws",
                    "description": "This server (wss behind TLS)",
                    "security": [{"$ref": "#/components/securitySchemes/bearer"}],
                }
            },
            "channels": {
                CHANNEL: {
                    "address": "/v1/ws",
                    "title": "Feeds",
                    "description": "Commands, their replies, and the events of subscribed feeds.",
                    "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in self.messages},
                }
            },
            "operations": operations,
            "components": {
                "schemas": dict(sorted(self.schemas.items())),
                "messages": self.messages,
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "In the handshake; or send an `auth` message first (within auth_timeout)",
                    }
                },
            },
        }
