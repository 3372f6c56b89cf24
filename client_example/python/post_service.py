"""Example: a service that posts activities over WebSocket, with acks and retries.

It simulates a booking system: every ``--interval`` seconds one booking changes state and the
service publishes the matching activity. Each write is acknowledged by the server; if the
connection drops, the client reconnects and retries the same write without creating a duplicate.

    FEED_TOKEN=… python client_example/python/post_service.py --feed demo:lobby --count 10
    python client_example/python/post_service.py --api-key KEY --feed demo:lobby   # as a service

Stop with Ctrl-C. A token needs ``write`` on the feed (an API key is admin unless restricted).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feedclient import FeedClient  # noqa: E402

PEOPLE = [
    {"id": "u-alexandra", "name": "Alexandra Beaumont"},
    {"id": "u-marcus", "name": "Marcus Chen"},
    {"id": "u-priya", "name": "Priya Natarajan"},
    {"id": "u-jonas", "name": "Jonas Weber"},
]

STEPS = [
    ("booking.create", "New booking request for {nights} nights", None),
    ("booking.confirm", "Booking confirmed and payment processed successfully!", "fire"),
    ("comment.add", "Guests asked for a late check-in (around 22:00).", None),
    ("payment.capture", "Deposit of €{amount} captured", "check"),
    ("booking.update", "Check-in moved to {hour}:00", "like"),
]


def make_activity(n: int, as_admin: bool) -> dict[str, object]:
    """The ``n``-th simulated activity (with an explicit actor only when we may set one)."""
    verb, text, emotion = STEPS[n % len(STEPS)]
    booking = f"bk-{1000 + n // len(STEPS)}"
    activity: dict[str, object] = {
        "verb": verb,
        "object": {"id": booking, "type": "booking"},
        "text": text.format(nights=random.randint(1, 9), amount=random.randint(50, 900), hour=random.randint(14, 20)),
        "audience": ["members"],
        "attachments": [{"type": "file", "id": f"{booking}.pdf"}] if verb == "payment.capture" else [],
    }
    if not activity["attachments"]:
        del activity["attachments"]
    if emotion:
        activity["emotion"] = emotion
    if as_admin:  # only feed admins (and API keys) may name another actor
        activity["actor"] = random.choice(PEOPLE)
    return activity


async def run(args: argparse.Namespace) -> None:
    """Connect once, then publish ``--count`` activities (0: forever)."""
    client = FeedClient(args.url, token=args.token or None, api_key=args.api_key or None, ack_timeout=args.timeout)
    async with client:
        print(f"connected to {args.url} as {client.sub or 'api key'}", file=sys.stderr)
        n = 0
        while args.count == 0 or n < args.count:
            activity = make_activity(n, as_admin=bool(args.api_key or args.admin))
            [stored] = await client.publish(args.feed, activity, retries=args.retries)
            print(f"#{stored['seq']:<5} {stored['id']}  {stored['verb']:<16} {stored.get('text', '')}")
            n += 1
            await asyncio.sleep(args.interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("FEED_WS_URL", "ws://127.0.0.1:8000/v1/ws"))
    parser.add_argument("--token", default=os.environ.get("FEED_TOKEN", ""), help="JWT (or $FEED_TOKEN)")
    parser.add_argument("--api-key", default=os.environ.get("FEED_API_KEY", ""), help="API key (or $FEED_API_KEY)")
    parser.add_argument("--admin", action="store_true", help="the token is a feed admin: vary the actor")
    parser.add_argument("--feed", default="demo:lobby")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between activities")
    parser.add_argument("--count", type=int, default=0, help="activities to post (0: forever)")
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each ack")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
