"""The official ``getstream`` browser bundle in headless Chromium, from another origin.

The page is served from another origin (a static server on its own port); the server is on
``http://127.0.0.1:<port>``: every API call goes through a CORS preflight, and the faye client
handshakes by cross-origin long-polling before it subscribes. Skipped without Chromium, the
playwright package or the npm client.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from conftest import RunningServer
from getstream_support import GETSTREAM, GS_APP, GS_KEY, GS_SECRET, JS_DIR, js_ready

from server.embedded import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
BUNDLE = JS_DIR / "node_modules" / "getstream" / "dist" / "js_min" / "getstream.js"


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} not installed"),
]
async_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")

# The published bundle's userAgent() reads ``process`` unguarded (``void 0 === process``), which
# throws in a page where no bundler defined it; a page defines it, as bundlers do.
PAGE = """<!doctype html><html><head><script>window.process = window.process || { env: {} };</script>
<script src="/getstream.js"></script></head><body><script>
window.run = async (cfg) => {
  const client = stream.connect(cfg.key, cfg.token, cfg.appId, {
    urlOverride: { api: cfg.base + '/api/' }, fayeUrl: cfg.base + '/faye',
  });
  const feed = client.feed('user', cfg.user);
  window.received = [];
  await feed.subscribe((m) => window.received.push(m));
  const added = await feed.addActivity({ verb: 'browse', object: 'page:1' });
  const page = await feed.get({ limit: 5 });
  return { added, page };
};
</script></body></html>"""


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[str]:
    """A static server (its own port, so another origin than the feed server's) with the page and
    the npm client's browser bundle. Loopback like the server: Chromium's local-network rules for
    public pages are not what is tested."""
    js_ready()
    (tmp_path / "index.html").write_text(PAGE)
    shutil.copy(BUNDLE, tmp_path / "getstream.js")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    httpd.RequestHandlerClass.log_message = lambda *args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
async def page(origin: str) -> AsyncIterator[Any]:
    """The page in headless Chromium (its console goes to the test log)."""
    async with async_api.async_playwright() as pw:
        browser = await asyncio.wait_for(pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS), 30)
        try:
            pg = await browser.new_page()
            pg.set_default_timeout(15_000)
            pg.on("console", lambda m: print("browser console:", m.type, m.text))
            await pg.goto(f"{origin}/index.html")
            yield pg
        finally:
            await asyncio.wait_for(browser.close(), 15)


async def test_browser_client_with_a_user_token(server_factory: Any, page: Any) -> None:
    """In a browser on another origin, a user-token client reads and writes its own feed and its
    feed.subscribe receives its own write and a native write, filtered by audience."""
    gs: RunningServer = await server_factory(getstream=GETSTREAM)
    token = jwt.encode({"user_id": "web"}, GS_SECRET, algorithm="HS256")
    cfg = {"key": GS_KEY, "token": token, "appId": GS_APP, "base": gs.base, "user": "web"}
    out = await asyncio.wait_for(page.evaluate("cfg => window.run(cfg)", cfg), 30)
    assert out["added"]["actor"] == "SU:web" and out["added"]["object"] == "page:1"
    assert [a["id"] for a in out["page"]["results"]] == [out["added"]["id"]]
    native = gs.http(gs.token("admin", admin=True))
    for verb, audience in (("hidden", ["identity:someone"]), ("shown", ["everyone"])):
        response = await native.post(
            "/v1/feeds/user:web/activities", json={"verb": verb, "object": "o", "audience": audience}
        )
        assert response.status_code == 201
    await page.wait_for_function("window.received.length >= 2", timeout=15_000)
    await asyncio.sleep(0.3)
    received = await page.evaluate("window.received")
    assert [m["new"][0]["verb"] for m in received] == ["browse", "shown"]
    assert received[0]["feed"] == "user:web"
