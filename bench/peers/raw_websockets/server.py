"""Baseline: the least a Python WebSocket fan-out server can do.

``websockets.asyncio.server`` + ``websockets.broadcast()``, no Redis, no auth, no JSON on the
delivery path. This is the *ceiling* our server's fan-out is compared against (same machine, same
run, same load generator).

- ``/sub?feed=F``  -- subscribe to feed ``F``; the server answers ``{"type":"subscribed"}``.
- ``/pub``         -- each message is ``<feed>\\n<body>``; ``body`` is broadcast verbatim to the
                      subscribers of ``<feed>``.
- ``/pub?ack=1``   -- as ``/pub`` but every message is also answered with
                      ``{"type":"ack","ref":…}`` (``ref`` read from the JSON body): the WebSocket
                      request/response "hello" used as the baseline of the ingest scenario.

Run: ``python server.py --port 9001`` (uses uvloop when installed, as our server does).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

FEEDS: dict[str, set[ServerConnection]] = defaultdict(set)


async def handler(ws: ServerConnection) -> None:
    url = urlsplit(ws.request.path)
    query = parse_qs(url.query)
    if url.path == "/sub":
        feed = query.get("feed", ["bench:room"])[0]
        members = FEEDS[feed]
        members.add(ws)
        try:
            await ws.send(json.dumps({"type": "subscribed", "feed": feed}))
            async for _ in ws:  # subscribers only listen; drain anything they send
                pass
        finally:
            members.discard(ws)
            if not members:
                FEEDS.pop(feed, None)
    elif url.path == "/pub":
        ack = query.get("ack") == ["1"]
        async for message in ws:
            text = message if isinstance(message, str) else message.decode()
            feed, _, body = text.partition("\n")
            if ack:
                await ws.send(json.dumps({"type": "ack", "ref": json.loads(body).get("ref")}))
            members = FEEDS.get(feed)
            if members:
                broadcast(members, body)
    else:
        await ws.close(1008, "unknown path")


async def main(port: int) -> None:
    # compression=None: the load generator never negotiates permessage-deflate anyway; say so.
    # backlog: 10k clients connect in bursts; asyncio's default of 100 would drop SYNs.
    async with serve(handler, "127.0.0.1", port, compression=None, backlog=4096, max_queue=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        from uvloop import run
    except ImportError:
        from asyncio import run
    try:
        run(main(args.port))
    except KeyboardInterrupt:
        pass
