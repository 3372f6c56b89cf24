"""Peer: python-socketio with its Redis manager, served by uvicorn.

The minimal equivalent of "one room, N subscribers, publish through Redis":

- a client joins a room with the acknowledged event ``subscribe`` (payload: the room name);
- a ``publish`` event ``{"feed": F, "activity": {…}}`` is emitted to room ``F`` as ``activity``.
  ``AsyncRedisManager`` sends every emit through Redis pub/sub, and this process delivers it to its
  local room members when it comes back from Redis -- the same path our server's events take.

Run: ``REDIS_URL=redis://127.0.0.1:6379/0 uvicorn app:app --port P`` (from this directory).
"""

import os

import socketio

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

mgr = socketio.AsyncRedisManager(REDIS_URL, channel="bench-socketio")
# Long ping interval: keep-alive traffic is not what is being measured (the load generator
# answers pings anyway). Unlimited message size is not needed; defaults are kept otherwise.
sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=mgr,
    cors_allowed_origins="*",
    ping_interval=60,
    ping_timeout=60,
)
app = socketio.ASGIApp(sio)


@sio.on("subscribe")
async def subscribe(sid: str, room: str) -> str:
    await sio.enter_room(sid, room)
    return "ok"


@sio.on("publish")
async def publish(sid: str, data: dict) -> None:
    await sio.emit("activity", data, room=data["feed"])
