"""``create_app(settings)``: wires Redis, store, broker, hub, service and the HTTP/WebSocket front.

This is the only module that builds concrete Redis objects. Nothing connects at construction;
the lifespan starts the embedded server (if no URL is configured), the broker, and closes
everything on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .auth import Authenticator
from .broker import Broker
from .config import Settings, load_settings
from .dialects import dialect_routes
from .embedded import EmbeddedRedis, free_port
from .errors import FeedError
from .http import feed_error_handler, http_error_handler, internal_error_handler, json_response
from .hub import Hub
from .keys import Keys
from .metrics import Metrics
from .openapi import OpenApi
from .routes import NativeApi, Readiness
from .service import FeedService
from .store import FeedStore
from .ws import WebSocketEndpoint

log = logging.getLogger("feedserver")

#: The live dashboard (client_example/web), served at /demo/ when [server] demo is on.
DEMO_DIR = Path(__file__).resolve().parent.parent / "client_example" / "web"

Scope = dict[str, Any]


class FeedApp:
    """The ASGI application: ``/v1/ws`` goes straight to the WebSocket endpoint, the rest to Starlette."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        self.embedded: EmbeddedRedis | None = None
        url = s.redis.url
        if not url:
            self.embedded = EmbeddedRedis(s.redis.data_dir, port=free_port(), appendfsync=s.redis.appendfsync)
            url = self.embedded.url
        self.redis_url = url
        secret = s.auth.jwt_secret
        if not secret and "HS256" in s.auth.jwt_algorithms:
            secret = secrets.token_urlsafe(32)
            log.warning("no [auth] jwt_secret configured: using a random one for this run (dev only): %s", secret)
        self.jwt_secret = secret

        self.metrics = Metrics()
        self.keys = Keys(s.redis.key_prefix)
        self.redis = Redis.from_url(
            url,
            socket_timeout=s.redis.command_timeout,
            socket_connect_timeout=s.redis.command_timeout,
            health_check_interval=0,
            protocol=2,
            max_connections=256,
        )
        self.store = FeedStore(
            self.redis,
            self.keys,
            max_feed_length=s.feeds.max_feed_length,
            resume_window=s.feeds.resume_window,
            retention_days=s.feeds.retention_days,
            timeout=s.redis.command_timeout,
        )
        self.hub = Hub(self.store, self.metrics)
        self.broker = Broker(
            url, self.keys, self.hub.on_event, self.hub.on_resync, subscribe_timeout=s.redis.command_timeout
        )
        self.hub.attach(self.broker)
        self.service = FeedService(
            self.store,
            self.hub,
            self.metrics,
            default_audience=s.feeds.default_audience,
            max_activity_bytes=s.feeds.max_activity_bytes,
            max_batch=s.feeds.max_batch,
            max_page=s.feeds.max_page,
        )
        self.auth = Authenticator(
            jwt_secret=secret,
            algorithms=s.auth.jwt_algorithms,
            public_key=s.auth.jwt_public_key,
            jwks_url=s.auth.jwks_url,
            audience=s.auth.audience,
            issuer=s.auth.issuer,
            api_keys=s.auth.api_keys,
            api_key_feeds=s.auth.api_key_feeds,
            public_feeds=s.auth.public_feeds,
        )
        self.readiness = Readiness(
            self.store.ping,
            lambda: self.broker.round_trip(self.store.publish_probe, s.redis.command_timeout),
        )
        max_body = s.feeds.max_batch * s.feeds.max_activity_bytes + 65536
        self.native = NativeApi(
            self.service, self.auth, self.metrics, max_body_bytes=max_body, readiness=self.readiness
        )
        self.ws = WebSocketEndpoint(
            self.service,
            self.auth,
            self.metrics,
            allowed_origins=s.server.allowed_origins,
            queue_size=s.server.queue_size,
            auth_timeout=s.server.auth_timeout,
            close_timeout=s.server.close_timeout,
        )
        self.openapi = OpenApi()
        routes: list[BaseRoute] = [
            *self.native.routes(),
            *dialect_routes(self.service, self.auth, self.openapi, max_body),
            Route("/openapi.json", self._openapi_json, methods=["GET"]),
            Route("/docs", self._docs, methods=["GET"]),
        ]
        if s.server.demo and DEMO_DIR.is_dir():
            routes.append(Mount("/demo", app=StaticFiles(directory=DEMO_DIR, html=True), name="demo"))
        self.http = Starlette(
            routes=routes,
            lifespan=self._lifespan,
            exception_handlers={
                FeedError: feed_error_handler,
                HTTPException: http_error_handler,
                Exception: internal_error_handler,
            },
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/v1/ws":
            await self.ws(scope, receive, send)
        else:
            await self.http(scope, receive, send)

    async def _openapi_json(self, request: Request) -> Response:
        return json_response(self.openapi.document())

    async def _docs(self, request: Request) -> Response:
        return HTMLResponse(self.openapi.html())

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.start)
        try:
            await self.broker.start()
            if not self.broker.connected:
                log.warning("Redis pub/sub is not reachable yet at startup; retrying in the background")
            yield
        finally:
            self.readiness.draining = True
            self.ws.close_all(1012, "server restarting")
            await self.hub.close()
            await self.broker.close()
            await self.store.close()
            await self.redis.aclose()
            if self.embedded is not None:
                await asyncio.to_thread(self.embedded.stop)


def create_app(settings: Settings | None = None) -> FeedApp:
    """Build the ASGI app from ``settings`` (default: ``config.toml`` and ``FEED_*`` variables)."""
    return FeedApp(settings or load_settings())


def app_from_env() -> FeedApp:
    """uvicorn factory for worker processes: settings from ``$FEED_CONFIG`` and the environment."""
    return create_app(load_settings())
