"""The live dashboard (client_example/web, served at /demo/) in a real headless Chromium.

Driven by the ``playwright`` package against Debian's ``/usr/bin/chromium`` (never a downloaded
browser); skipped when either is missing. A screenshot is saved to ``artifacts/dashboard.png``.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import ROOT, RunningServer, delete_prefix, make_settings, start_server

from server.embedded import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts"
FEEDS = {"room:*": ["read", "write", "member"]}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]
async_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")

Starter = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start(redis_url: str, prefix: str) -> AsyncIterator[Starter]:
    """Start servers sharing this test's Redis prefix, optionally on a given port (to restart one)."""
    running: list[RunningServer] = []

    async def starter(port: int | None = None, **sections: dict[str, Any]) -> RunningServer:
        srv = await start_server(make_settings(redis_url, prefix, server={"port": port or free_port()}, **sections))
        running.append(srv)
        return srv

    yield starter
    for srv in running:
        if not srv.task.done():
            await srv.stop()


@dataclass
class Console:
    """Errors the page reported, each tagged with the test's phase at the time."""

    phase: str = "normal"  # "restart" while the server is deliberately down
    errors: list[tuple[str, str]] = field(default_factory=list)

    def unexpected(self) -> list[tuple[str, str]]:
        """All errors except the browser's own reports of refused connections while the server is down."""
        refused = re.compile(r"WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET")
        return [(phase, text) for phase, text in self.errors if not (phase == "restart" and refused.search(text))]


@pytest.fixture
def console() -> Console:
    """Collects the page's console errors and uncaught exceptions."""
    return Console()


@pytest.fixture
async def page(console: Console) -> AsyncIterator[Any]:
    """A fresh page in headless Chromium, reporting its errors to ``console``."""
    async with async_api.async_playwright() as pw:
        browser = await asyncio.wait_for(pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS), 30)
        try:
            context = await browser.new_context(viewport={"width": 1600, "height": 1000})
            pg = await context.new_page()
            pg.set_default_timeout(10_000)
            pg.on("console", lambda m: m.type == "error" and console.errors.append((console.phase, m.text)))
            pg.on("pageerror", lambda e: console.errors.append(("pageerror", str(e))))
            yield pg
        finally:
            await asyncio.wait_for(browser.close(), 15)


def ago(minutes: float) -> str:
    """An ISO time ``minutes`` ago."""
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


AVATAR = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 48 48'%3E"
    "%3Crect width='48' height='48' fill='%23f59e0b'/%3E%3Ccircle cx='24' cy='19' r='9' fill='%23fff7ed'/%3E"
    "%3Cpath d='M8 46c2-10 9-15 16-15s14 5 16 15z' fill='%23fff7ed'/%3E%3C/svg%3E"
)

HISTORY = [
    {
        "actor": {"id": "u-priya", "name": "Priya Natarajan"},
        "verb": "booking.update",
        "object": {"id": "f4d1c8e5", "type": "booking"},
        "text": "Moved the check-in and added a guest",
        "changes": {"checkIn": {"from": "14:00", "to": "15:00"}, "guests": {"from": 2, "to": 3}},
        "emotion": "like",
        "audience": ["members"],
        "time": ago(42),
    },
    {
        "actor": {"id": "u-sofia", "name": "Sofia Rossi", "avatar": "data:image/png;base64,broken"},
        "verb": "video.upload",
        "object": "walkthrough",
        "text": "Uploaded the property walkthrough",
        "attachments": [{"type": "video", "url": "https://example.com/v/walkthrough.mp4"}],
        "emotion": "party",
        "audience": ["public", "members"],
        "time": ago(180),
    },
    {
        "actor": {"id": "u-marcus", "name": "Marcus Chen", "avatar": AVATAR},
        "verb": "comment.add",
        "object": {"id": "f4d1c8e5", "type": "booking"},
        "target": {"id": "annotation-789", "sub_id": "comment-001"},
        "template": "{{user}} commented on booking {{booking.id}}",
        "template_data": {"user": {"name": "Marcus Chen"}, "booking": {"id": "f4d1c8e5"}},
        "text": "Can we move the check-in to 3 pm?",
        "audience": ["everyone"],
        "time": ago(9),
    },
    {
        "actor": {"id": "u-alexandra", "name": "Alexandra Beaumont"},
        "verb": "booking.confirm",
        "object": {"id": "f4d1c8e5", "type": "booking"},
        "text": "Booking confirmed and payment processed successfully!",
        "emotion": "fire",
        "audience": ["members", {"type": "role", "id": "accounting", "notify": True}],
        "attachments": [
            {"type": "file", "id": "invoice-2026-001.pdf"},
            {"type": "link", "url": "https://example.com/b/f4d1"},
        ],
        "time": ago(3),
    },
]

OPS_HISTORY = [
    {
        "actor": {"id": "ci", "name": "Release Bot"},
        "verb": "deploy.finish",
        "object": {"id": "api-v2.14.0", "type": "release"},
        "text": "api v2.14.0 deployed to production (eu-west-1)",
        "emotion": "check",
        "audience": ["members"],
        "time": ago(6),
    },
    {
        "actor": {"id": "u-dana", "name": "Dana Okafor"},
        "verb": "incident.resolve",
        "object": {"id": "INC-311", "type": "incident"},
        "text": "Elevated latency on checkout resolved.",
        "emotion": "happy",
        "audience": ["everyone"],
        "time": ago(55),
    },
]


async def write(srv: RunningServer, token: str, feed: str, activity: dict[str, Any]) -> dict[str, Any]:
    """Write over HTTP; returns the stored activity."""
    r = await srv.http(token).post(f"/v1/feeds/{feed}/activities", json=activity)
    assert r.status_code == 201, r.text
    return r.json()["activities"][0]  # type: ignore[no-any-return]


def cards(feed: str) -> str:
    """The selector of a column's cards (those not being removed)."""
    return f'section.column[data-feed="{feed}"] li.card:not(.leaving)'


async def card_ids(pg: Any, feed: str) -> list[str]:
    return await pg.eval_on_selector_all(cards(feed), "els => els.map(e => e.dataset.id)")  # type: ignore[no-any-return]


async def test_dashboard_history_live_updates_and_restart(start: Starter, page: Any, console: Console) -> None:
    """History, a live write within 2 s, in-place updates, posting, and a server restart with no gap or duplicate."""
    port = free_port()
    srv = await start(port)
    other = await start()  # a second process on the same Redis: writes while the first is down
    admin = srv.token("ops", admin=True, name="Ops")
    viewer = srv.token("alice", FEEDS, name="Alice Martin")
    for activity in HISTORY:
        await write(srv, admin, "room:lobby", activity)
    for activity in OPS_HISTORY:
        await write(srv, admin, "room:ops", activity)

    async with asyncio.timeout(90):
        await page.goto(f"{srv.base}/demo/?token={viewer}&feed=room:lobby&feed=room:ops")
        await page.wait_for_selector("body[data-status=live]")
        await page.wait_for_function(f"document.querySelectorAll('{cards('room:lobby')}').length === 4")
        lobby = page.locator('section.column[data-feed="room:lobby"]')
        texts = await lobby.locator("li.card").all_inner_texts()
        assert "Booking confirmed" in texts[0] and "Moved the check-in" in texts[2], texts  # newest first
        first = lobby.locator("li.card").first
        assert await first.locator(".actor").inner_text() == "Alexandra Beaumont"
        assert await first.locator(".initials").inner_text() == "AB"
        assert await first.locator(".emotion").inner_text() == "fire"
        assert await first.locator(".aud").all_inner_texts() == ["Members", "accounting"]
        assert re.fullmatch(r"\d+ min ago", await first.locator("time.when").inner_text())
        marcus = lobby.locator("li.card", has_text="Marcus Chen")
        assert await marcus.locator(".template").inner_text() == "Marcus Chen commented on booking f4d1c8e5"
        assert await marcus.locator(".avatar img").count() == 1  # a picture that loads is shown
        sofia = lobby.locator("li.card", has_text="Sofia Rossi")
        await sofia.locator(".initials").wait_for()  # a picture that fails falls back to initials
        assert await sofia.locator(".avatar img").count() == 0
        assert await page.locator(cards("room:ops")).count() == 2

        # A live write shows up within 2 s, highlighted.
        live = await write(
            srv,
            admin,
            "room:lobby",
            {**HISTORY[3], "time": ago(0), "text": "Live: guest checked in", "emotion": "love"},
        )
        await page.wait_for_selector(f'{cards("room:lobby")}[data-id="{live["id"]}"].fresh', timeout=2000)
        assert (await card_ids(page, "room:lobby"))[0] == live["id"]

        # An update (same foreign_id and time) replaces the card in place.
        original = await write(
            srv, admin, "room:ops", {**OPS_HISTORY[0], "foreign_id": "deploy:1", "time": ago(1), "text": "Deploying…"}
        )
        await page.wait_for_selector(f'[data-id="{original["id"]}"]', timeout=2000)
        await write(srv, admin, "room:ops", {**OPS_HISTORY[0], "foreign_id": "deploy:1", "time": original["time"]})
        changed = page.locator(f'[data-id="{original["id"]}"].changed')
        await changed.wait_for(timeout=2000)
        assert "deployed to production" in await changed.inner_text()
        assert await page.locator(cards("room:ops")).count() == 3

        # Posting from the dashboard goes over the WebSocket and appears like any other write.
        await page.click("button.primary:has-text('Post')")
        await page.fill("dialog.composer textarea[name=text]", "Posted from the wall screen")
        await page.select_option("dialog.composer select[name=emotion]", "party")
        await page.click("dialog.composer button[type=submit]")
        await page.wait_for_selector(f"{cards('room:lobby')}:has-text('Posted from the wall screen')", timeout=3000)
        assert await page.locator("dialog.composer[open]").count() == 0

        # Restart the server; what is written meanwhile (through the other process) appears once.
        console.phase = "restart"
        await srv.stop()
        await page.wait_for_selector("body[data-status=reconnecting]", timeout=5000)
        meanwhile = [
            await write(other, admin, "room:lobby", {**HISTORY[2], "time": ago(0), "text": f"Written while down #{i}"})
            for i in range(2)
        ]
        srv = await start(port)
        await page.wait_for_selector("body[data-status=live]", timeout=15_000)
        for activity in meanwhile:
            await page.wait_for_selector(f'[data-id="{activity["id"]}"]', timeout=5000)
        console.phase = "normal"
        after = await write(srv, admin, "room:lobby", {**HISTORY[0], "time": ago(0), "text": "Back online"})
        await page.wait_for_selector(f'[data-id="{after["id"]}"]', timeout=2000)

        ids = await card_ids(page, "room:lobby")
        assert len(ids) == len(set(ids)) == 4 + 1 + 1 + 2 + 1, ids
        assert ids[:3] == [after["id"], meanwhile[1]["id"], meanwhile[0]["id"]]
        assert await page.locator(".status[data-state=live]").inner_text() == "Live"

        ARTIFACTS.mkdir(exist_ok=True)
        await page.wait_for_timeout(700)  # let the arrival animation settle (the highlight stays)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

    assert console.unexpected() == []


async def test_dashboard_removes_deleted_activities(start: Starter, page: Any, console: Console) -> None:
    """A ``deleted`` event removes the card (needs the server's DELETE endpoint)."""
    srv = await start()
    token = srv.token("alice", FEEDS)
    probe = await write(srv, token, "room:probe", {"verb": "say", "object": "o"})
    response = await srv.http(token).delete(f"/v1/feeds/room:probe/activities/{probe['id']}")
    if response.status_code in (404, 405):
        pytest.skip("the server has no DELETE /v1/feeds/{feed}/activities/{id} yet")
    assert response.status_code == 204, response.text
    keep = await write(srv, token, "room:1", {"verb": "say", "object": "o", "text": "stays"})
    gone = await write(srv, token, "room:1", {"verb": "say", "object": "o", "text": "goes"})
    async with asyncio.timeout(30):
        await page.goto(f"{srv.base}/demo/?token={token}&feed=room:1")
        await page.wait_for_selector(f'[data-id="{gone["id"]}"]')
        r = await srv.http(token).delete(f"/v1/feeds/room:1/activities/{gone['id']}")
        assert r.status_code == 204, r.text
        await page.wait_for_selector(f'[data-id="{gone["id"]}"]', state="detached", timeout=2000)
        assert await card_ids(page, "room:1") == [keep["id"]]
    assert console.unexpected() == []


async def test_dashboard_reloads_when_history_was_lost(
    start: Starter, page: Any, console: Console, redis_url: str, prefix: str
) -> None:
    """After Redis lost the feed (new epoch) the resume is refused: the column reloads, then goes on live."""
    port = free_port()
    srv = await start(port)
    token = srv.token("alice", FEEDS)
    for text in ("old one", "old two"):
        await write(srv, token, "room:1", {"verb": "say", "object": "o", "text": text})
    async with asyncio.timeout(60):
        await page.goto(f"{srv.base}/demo/?token={token}&feed=room:1")
        await page.wait_for_function(f"document.querySelectorAll('{cards('room:1')}').length === 2")
        console.phase = "restart"
        await srv.stop()
        delete_prefix(redis_url, prefix)
        srv = await start(port)
        await page.wait_for_selector("body[data-status=live]", timeout=15_000)
        await page.wait_for_selector(".toast:has-text('reloading')", timeout=5000)
        await page.wait_for_function(f"document.querySelectorAll('{cards('room:1')}').length === 0")
        console.phase = "normal"
        new = await write(srv, token, "room:1", {"verb": "say", "object": "o", "text": "after the loss"})
        await page.wait_for_selector(f'[data-id="{new["id"]}"]', timeout=2000)
        assert await card_ids(page, "room:1") == [new["id"]]
    assert console.unexpected() == []


async def test_dashboard_form_without_parameters(start: Starter, page: Any, console: Console) -> None:
    """Without ``?feed=`` the page asks for feeds and a token, then opens the dashboard."""
    srv = await start()
    token = srv.token("alice", FEEDS)
    await write(srv, token, "room:1", {"verb": "say", "object": "o", "text": "hello from the form"})
    async with asyncio.timeout(30):
        await page.goto(f"{srv.base}/demo/")
        await page.fill("form.connect-card textarea[name=feeds]", "room:1")
        await page.fill("form.connect-card textarea[name=token]", token)
        await page.click("form.connect-card button[type=submit]")
        await page.wait_for_selector("body[data-status=live]")
        await page.wait_for_selector("li.card:has-text('hello from the form')")
        assert "feed=room%3A1" in page.url or "feed=room:1" in page.url
    assert console.unexpected() == []


async def test_dashboard_for_a_reader(start: Starter, page: Any, console: Console) -> None:
    """Read-only token: no Post, one message per forbidden feed, hidden counts, sentences, clamps, inspector, Escape."""
    srv = await start()
    admin = srv.token("ops", admin=True, name="Ops")
    for activity in HISTORY:
        await write(srv, admin, "room:lobby", activity)
    long_text = "A very long note about the booking. " * 40
    await write(srv, admin, "room:lobby", {"verb": "note.add", "object": "f4d1c8e5", "text": long_text, "time": ago(1)})
    for i in range(3):
        await write(srv, admin, "room:staff", {"verb": "say", "object": "o", "text": f"staff only {i}"})
    reader = srv.token(
        "alice", {"room:lobby": ["read", "member"], "room:staff": ["read"], "notifications:alice": ["read"]}
    )
    async with asyncio.timeout(60):
        await page.goto(f"{srv.base}/demo/?token={reader}&feed=room:lobby&feed=room:staff&feed=secret:vault")
        await page.wait_for_selector("body[data-status=live]")
        await page.wait_for_function(f"document.querySelectorAll('{cards('room:lobby')}').length === 5")
        assert await page.locator("header.topbar button.primary").is_hidden()  # no write right anywhere

        # A feed the token may not read: one clear message, nothing else.
        vault = page.locator('section.column[data-feed="secret:vault"]')
        await vault.locator(".notice.error").wait_for()
        await page.wait_for_timeout(300)
        assert await vault.locator(".notice:visible").count() == 1
        assert "may not read secret:vault" in await vault.locator(".notice").inner_text()
        assert await vault.locator(".empty").is_hidden()
        assert "Cannot" not in await vault.inner_text()

        # A feed whose activities all leave the reader out says so, without showing them.
        staff = page.locator('section.column[data-feed="room:staff"]')
        await staff.locator(".hidden-hint").wait_for()
        assert "3 activities here are not shown to you" in await staff.locator(".hidden-hint").inner_text()
        assert "staff only" not in await staff.inner_text() and await staff.locator(".empty").is_hidden()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-reader.png"))

        # Verbs read as sentences; long text is clamped until clicked.
        lobby = page.locator('section.column[data-feed="room:lobby"]')
        confirmed = lobby.locator("li.card", has_text="Alexandra Beaumont")
        sentence = " ".join((await confirmed.locator(".line").inner_text()).split())
        assert sentence.startswith("Alexandra Beaumont confirmed booking f4d1…"), sentence
        note = lobby.locator("li.card", has_text="A very long note").locator(".text")
        clamped = await note.evaluate("n => n.scrollHeight > n.clientHeight + 4")
        assert clamped
        await note.click()
        assert await note.evaluate("n => n.scrollHeight <= n.clientHeight + 4")

        # The raw-JSON inspector, closed with Escape.
        await confirmed.hover()
        await confirmed.locator("button.inspect").click()
        inspector = page.locator("dialog.inspector[open]")
        await inspector.wait_for()
        raw = await inspector.locator("pre").inner_text()
        assert '"verb": "booking.confirm"' in raw and '"id": "f4d1c8e5"' in raw
        await page.screenshot(path=str(ARTIFACTS / "dashboard-inspector.png"))
        await page.keyboard.press("Escape")
        await inspector.wait_for(state="detached")

        # The notification panel closes with Escape too.
        await page.locator("button.bell").wait_for(state="visible")
        await page.click("button.bell")
        await page.locator(".notif-panel").wait_for(state="visible")
        await page.keyboard.press("Escape")
        await page.locator(".notif-panel").wait_for(state="hidden")
    assert console.unexpected() == []


async def another_page(page: Any, console: Console) -> Any:
    """A second tab in the same browser (another reader of the same server), reporting to ``console``."""
    pg = await page.context.new_page()
    pg.set_default_timeout(10_000)
    pg.on("console", lambda m: m.type == "error" and console.errors.append((console.phase, m.text)))
    pg.on("pageerror", lambda e: console.errors.append(("pageerror", str(e))))
    return pg


def group(feed: str, key: str) -> str:
    """The selector of the group card ``key`` in an aggregated column."""
    return f'section.column[data-feed="{feed}"] li.group-card[data-group="{key}"]'


def reaction(activity_id: str, kind: str) -> str:
    """The selector of an activity's reaction button (like / comment)."""
    return f'li.card[data-id="{activity_id}"] button.react[data-kind="{kind}"]'


async def counts_of(pg: Any, selector: str) -> tuple[str, str]:
    """(activity_count, actor_count) as the group card shows them."""
    node = pg.locator(selector)
    return await node.get_attribute("data-activity-count"), await node.get_attribute("data-actor-count")


LIKERS = [
    {"id": "u-alexandra", "name": "Alexandra Beaumont"},
    {"id": "u-bob", "name": "Bob Stone"},
    {"id": "u-chen", "name": "Chen Li"},
]


async def test_dashboard_aggregated_feed_and_reactions(start: Starter, page: Any, console: Console) -> None:
    """A configured aggregated feed shows its groups (counts, sentence) and updates them live; likes
    and comments are added by clicking, and their counts change live in another tab too."""
    srv = await start(feed_groups={"likes": {"type": "aggregated", "aggregation_format": "{{ verb }}_{{ object }}"}})
    admin = srv.token("ops", admin=True, name="Ops")
    for i, actor in enumerate(LIKERS):
        await write(srv, admin, "likes:board", {"actor": actor, "verb": "like", "object": "post:1", "time": ago(9 - i)})
    commented = await write(
        srv, admin, "likes:board", {"actor": LIKERS[0], "verb": "comment", "object": "post:1", "time": ago(10)}
    )
    flat = await write(srv, admin, "room:1", {"verb": "say", "object": "o", "text": "a flat feed keeps its cards"})
    alice = srv.token("alice", {"likes:*": ["read", "member"], "room:*": ["read", "write", "member"]}, name="Alice")
    bob = srv.token("bob", {"likes:*": ["read", "member"], "room:*": ["read", "member"]}, name="Bob")
    liked = group("likes:board", "like_post:1")
    async with asyncio.timeout(90):
        await page.goto(f"{srv.base}/demo/?token={alice}&feed=likes:board&feed=room:1")
        await page.wait_for_selector("body[data-status=live]")
        await page.locator(liked).wait_for()
        column = page.locator('section.column[data-feed="likes:board"]')
        assert await column.get_attribute("data-type") == "aggregated"
        assert await counts_of(page, liked) == ("3", "3")
        sentence = " ".join((await page.locator(f"{liked} .group-sentence").inner_text()).split())
        assert sentence.startswith("Chen Li and 2 others liked post:1"), sentence
        keys = await column.locator("li.group-card").evaluate_all("els => els.map(e => e.dataset.group)")
        assert keys == ["like_post:1", "comment_post:1"]  # newest group first
        assert await page.locator(f"{liked} .group-items > li.card").count() == 3

        # Live: a new liker, a like by someone already counted, and a new group.
        erin = await write(
            srv, admin, "likes:board", {"actor": {"id": "u-erin", "name": "Erin"}, "verb": "like", "object": "post:1"}
        )
        await page.wait_for_selector(f'{liked}[data-activity-count="4"][data-actor-count="4"]', timeout=2000)
        assert " ".join((await page.locator(f"{liked} .group-sentence").inner_text()).split()).startswith(
            "Erin and 3 others liked post:1"
        )
        await write(srv, admin, "likes:board", {"actor": LIKERS[1], "verb": "like", "object": "post:1"})
        await page.wait_for_selector(f'{liked}[data-activity-count="5"][data-actor-count="4"]', timeout=2000)
        await write(srv, admin, "likes:board", {"actor": LIKERS[2], "verb": "share", "object": "post:1"})
        await page.wait_for_selector(group("likes:board", "share_post:1"), timeout=2000)
        keys = await column.locator("li.group-card").evaluate_all("els => els.map(e => e.dataset.group)")
        assert keys == ["share_post:1", "like_post:1", "comment_post:1"]

        # A reaction by clicking, seen live in another reader's tab.
        other = await another_page(page, console)
        await other.goto(f"{srv.base}/demo/?token={bob}&feed=likes:board")
        await other.wait_for_selector("body[data-status=live]")
        await other.locator(reaction(erin["id"], "like")).wait_for()
        assert await page.locator(f"{reaction(erin['id'], 'like')} .n").inner_text() == "0"
        await page.click(reaction(erin["id"], "like"))
        await page.wait_for_selector(f'{reaction(erin["id"], "like")}[aria-pressed="true"]:has(.n:text-is("1"))')
        await other.wait_for_selector(f'{reaction(erin["id"], "like")}[aria-pressed="false"]:has(.n:text-is("1"))')
        await page.wait_for_timeout(600)  # past the bars' re-read of the activity: still counted once
        for pg in (page, other):
            assert await pg.locator(f"{reaction(erin['id'], 'like')} .n").inner_text() == "1"
        # A comment from the other tab reaches the first one, text included.
        await other.click(reaction(commented["id"], "comment"))
        await other.fill(f'li.card[data-id="{commented["id"]}"] .comment-form input', "Nice one")
        await other.click(f'li.card[data-id="{commented["id"]}"] .comment-form button[type=submit]')
        await page.wait_for_selector(f'{reaction(commented["id"], "comment")} .n:text-is("1")', timeout=3000)
        assert "bob Nice one" in await page.locator(f'li.card[data-id="{commented["id"]}"] .comments').inner_text()
        # Pressing Like again takes the like back, everywhere.
        await page.click(reaction(erin["id"], "like"))
        await other.wait_for_selector(f'{reaction(erin["id"], "like")} .n:text-is("0")', timeout=3000)
        await page.wait_for_selector(f'{reaction(erin["id"], "like")}[aria-pressed="false"]:has(.n:text-is("0"))')
        listed = await srv.http(alice).get("/v1/reactions", params={"activity_id": erin["id"], "feed": "likes:board"})
        assert listed.json()["results"] == []

        # A reaction event in a flat column changes the counts only, not the card.
        like = {"kind": "like", "activity_id": flat["id"], "feed": "room:1"}
        r = await srv.http(bob).post("/v1/reactions", json=like)
        assert r.status_code == 201, r.text
        await page.wait_for_selector(f'{reaction(flat["id"], "like")} .n:text-is("1")', timeout=2000)
        text = await page.locator(f'li.card[data-id="{flat["id"]}"]').inner_text()
        assert "a flat feed keeps its cards" in text and "null" not in text

        # A deleted activity leaves its group.
        r = await srv.http(admin).delete(f"/v1/feeds/likes:board/activities/{erin['id']}")
        assert r.status_code == 204, r.text
        await page.wait_for_selector(f'{liked}[data-activity-count="4"][data-actor-count="3"]', timeout=2000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-aggregated.png"))
    assert console.unexpected() == []


async def test_dashboard_notification_groups(start: Starter, page: Any, console: Console) -> None:
    """The bell counts unseen notification groups live; opening the panel shows the groups and marks
    them seen (in every tab); groups are marked read one by one or all at once. Without the
    server's feed group list an aggregated feed is recognised by its live events."""
    srv = await start()
    alice = srv.token("alice", {"room:*": ["read"], "aggregated:*": ["read", "write", "member"]}, name="Alice")
    bob = srv.token("bob", {"room:*": ["read", "write"]}, name="Bob Stone")
    notify = [{"type": "identity", "id": "alice", "notify": True}]

    async def groups() -> dict[str, Any]:
        r = await srv.http(alice).get("/v1/feeds/notifications:alice/groups")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async with asyncio.timeout(90):
        await page.goto(f"{srv.base}/demo/?token={alice}&feed=room:1")
        await page.wait_for_selector("body[data-status=live]")
        await page.locator("button.bell").wait_for(state="visible")
        other = await another_page(page, console)
        # The other tab does not get the feed group list: aggregated:team is first shown flat.
        await other.route("**/demo/feed-groups.json", lambda route: route.fulfill(json={}))
        await other.goto(f"{srv.base}/demo/?token={alice}&feed=aggregated:team")
        await other.wait_for_selector("body[data-status=live]")
        assert await other.locator('section.column[data-feed="aggregated:team"]').get_attribute("data-type") is None

        for text in ("first", "second"):
            await write(srv, bob, "room:1", {"verb": "mention", "object": "o", "text": text, "audience": notify})
        await write(srv, bob, "room:1", {"verb": "comment.add", "object": "o", "text": "hi", "audience": notify})
        for pg in (page, other):
            await pg.wait_for_function("document.querySelector('button.bell .badge-count').textContent === '2'")
        assert (await groups())["unseen"] == 2

        # Opening the panel shows the groups (new ones highlighted) and marks them seen.
        await page.click("button.bell")
        panel = page.locator(".notif-panel")
        await panel.locator("li.group-card").nth(1).wait_for()
        assert await panel.locator("li.group-card.new").count() == 2
        mention = panel.locator('li.group-card[data-group^="mention_"]')
        assert await mention.get_attribute("data-activity-count") == "2"
        assert await mention.get_attribute("data-actor-count") == "1"
        sentence = " ".join((await mention.locator(".group-sentence").inner_text()).split())
        assert sentence.startswith("Bob Stone mentioned you in o"), sentence
        await page.wait_for_selector(".notif-counts[data-unseen='0'][data-unread='2']")
        assert await page.locator("button.bell .badge-count").is_hidden()
        await other.wait_for_function("document.querySelector('button.bell .badge-count').hidden")
        assert (await groups())["unseen"] == 0
        await page.wait_for_selector('.notif-panel li.group-card[data-seen="true"][data-read="false"] >> nth=1')

        # Read one group, then all.
        await mention.locator("button.mark-read").click()
        await page.wait_for_selector(".notif-counts[data-unread='1']")
        await page.wait_for_selector('.notif-panel li.group-card[data-group^="mention_"][data-read="true"]')
        assert [g["is_read"] for g in (await groups())["results"]] in ([False, True], [True, False])
        await page.click(".notif-panel button.mark-all-read")
        await page.wait_for_selector(".notif-counts[data-unread='0']")
        assert (await groups())["unread"] == 0
        await page.screenshot(path=str(ARTIFACTS / "dashboard-notifications.png"))
        await page.keyboard.press("Escape")
        await panel.wait_for(state="hidden")

        # A live event naming its group turns the other tab's flat column into groups.
        await write(srv, alice, "aggregated:team", {"verb": "like", "object": "o"})
        team = 'section.column[data-feed="aggregated:team"]'
        await other.wait_for_selector(f'{team}[data-type="aggregated"] li.group-card[data-activity-count="1"]')
        await write(srv, alice, "aggregated:team", {"verb": "like", "object": "o"})
        await other.wait_for_selector(f'{team} li.group-card[data-activity-count="2"]', timeout=2000)
    assert console.unexpected() == []


async def test_docs_try_it_with_a_token(start: Starter, page: Any, console: Console) -> None:
    """/docs renders the generated description offline and its try-it calls the API with the given token."""
    srv = await start()
    token = srv.token("alice", FEEDS, name="Alice")
    await write(srv, token, "room:docs", {"verb": "say", "object": "o", "text": "seen through the docs"})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    async with asyncio.timeout(60):
        await page.goto(f"{srv.base}/docs#token={token}")
        op = page.locator("#operations-activities-get_feeds_feed_activities")
        await op.wait_for()
        await op.locator(".opblock-summary").click()
        await op.locator("input[placeholder=feed]").fill("room:docs")
        await op.locator("button.execute").click()
        status = op.locator(".live-responses-table tr.response .response-col_status").first
        await status.wait_for()
        assert (await status.inner_text()).strip() == "200"
        assert "seen through the docs" in await op.locator(".live-responses-table").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "docs.png"))
    assert all(url.startswith(srv.base) or url.startswith("data:") for url in requests), requests  # offline
    assert console.unexpected() == []
