"""The Channels consumer: one room ("group"), subscribers and a publisher on the same endpoint.

- ``{"type":"subscribe","feed":F}`` → ``group_add`` then ``{"type":"subscribed","feed":F}``;
- ``{"type":"publish","feed":F,"activity":{…}}`` → ``group_send`` through channels_redis; every
  member's consumer then sends ``{"type":"activity","feed":F,"activity":{…}}`` to its client.
"""

import json

from channels.generic.websocket import AsyncWebsocketConsumer


def group_name(feed: str) -> str:
    # Channels group names allow only ASCII letters, digits, hyphens, underscores and periods.
    return feed.replace(":", ".")


class FeedConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.groups_joined: list[str] = []
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for g in self.groups_joined:
            await self.channel_layer.group_discard(g, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        msg = json.loads(text_data or bytes_data or b"{}")
        kind = msg.get("type")
        if kind == "subscribe":
            group = group_name(msg["feed"])
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
            await self.send(json.dumps({"type": "subscribed", "feed": msg["feed"]}))
        elif kind == "publish":
            await self.channel_layer.group_send(
                group_name(msg["feed"]),
                {"type": "feed.activity", "feed": msg["feed"], "activity": msg["activity"]},
            )

    async def feed_activity(self, event: dict) -> None:
        await self.send(json.dumps({"type": "activity", "feed": event["feed"], "activity": event["activity"]}))
