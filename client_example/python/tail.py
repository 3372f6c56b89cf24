"""Example: ``tail -f`` for a feed, in the terminal.

Prints the last ``-n`` activities, then every change as it happens. Survives server restarts and
network cuts: the client resumes from the last change it saw; if the server cannot replay what
was missed, the history is printed again under a "reloaded" rule.

    FEED_TOKEN=… python client_example/python/tail.py demo:lobby
    python client_example/python/tail.py public:news --url ws://feeds.example.com/v1/ws   # anonymous
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feedclient import Event, FeedClient, Reset  # noqa: E402

COLOR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def paint(text: str, code: str) -> str:
    """ANSI colour when writing to a terminal."""
    return f"\033[{code}m{text}\033[0m" if COLOR else text


def render_template(template: str, data: dict[str, Any]) -> str:
    """``{{user.name}}`` placeholders filled from ``template_data`` (objects show their name)."""

    def value(match: re.Match[str]) -> str:
        current: Any = data
        for key in match.group(1).split("."):
            current = current.get(key) if isinstance(current, dict) else None
        if isinstance(current, dict):
            current = current.get("name") or current.get("id")
        return str(current) if current is not None else match.group(0)

    return re.sub(r"\{\{\s*([A-Za-z_][\w]*(?:\.\w+)*)\s*\}\}", value, template)


def line(activity: dict[str, Any], event: str = "created", seq: int | None = None) -> str:
    """One activity as a terminal line."""
    actor = activity.get("actor")
    who = str((actor.get("name") or actor.get("id")) if isinstance(actor, dict) else (actor or "?"))
    when = activity.get("time", "")
    try:
        when = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        pass
    what = activity.get("text") or ""
    if activity.get("template"):
        rendered = render_template(activity["template"], activity.get("template_data") or {})
        what = f"{rendered} — {what}" if what else rendered
    what = what or activity.get("i18n_key") or ""
    mark = {"created": paint("+", "32"), "updated": paint("~", "33"), "deleted": paint("-", "31")}.get(event, "?")
    seq_text = paint(f"#{seq if seq is not None else activity.get('seq', '')}", "90")
    if event == "deleted":
        return f"{mark} {seq_text} {paint('deleted', '31')} {activity.get('id')}"
    emotion = f" [{activity['emotion']}]" if activity.get("emotion") else ""
    verb = paint(activity.get("verb", ""), "36")
    return f"{mark} {seq_text} {paint(when, '90')} {paint(who, '1')} {verb} {what}{emotion}"


async def print_history(client: FeedClient, feed: str, n: int) -> None:
    """The last ``n`` activities, oldest first."""
    page = await client.history(feed, limit=n)
    for activity in reversed(page.get("results", [])):
        print(line(activity))


async def run(args: argparse.Namespace) -> None:
    """Subscribe, print history, then follow."""
    async with FeedClient(args.url, token=args.token or None, api_key=args.api_key or None) as client:
        async with await client.subscribe(args.feed) as sub:
            await print_history(client, args.feed, args.lines)
            print(paint(f"── following {args.feed} (epoch {sub.cursor.epoch}, seq {sub.cursor.seq}) ──", "90"))
            async for item in sub:
                if isinstance(item, Reset):
                    print(paint(f"── {item.reason}: history reloaded ──", "33"))
                    await print_history(client, args.feed, args.lines)
                elif isinstance(item, Event):
                    print(line(item.activity, item.event, item.seq), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("feed")
    parser.add_argument("--url", default=os.environ.get("FEED_WS_URL", "ws://127.0.0.1:8000/v1/ws"))
    parser.add_argument("--token", default=os.environ.get("FEED_TOKEN", ""), help="JWT (or $FEED_TOKEN)")
    parser.add_argument("--api-key", default=os.environ.get("FEED_API_KEY", ""), help="API key (or $FEED_API_KEY)")
    parser.add_argument("-n", "--lines", type=int, default=10, help="history lines to print first")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
