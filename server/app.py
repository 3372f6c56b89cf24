"""``create_app(settings)``: wires Redis, store, broker, hub, service and the HTTP/WebSocket front.

This is the only module that builds concrete Redis objects. Nothing connects at construction;
the lifespan starts the embedded server (if no URL is configured), the broker, and closes
everything on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

from redis.asyncio import ConnectionPool
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .aggregation import AggregationService, AggregationStore, FeedGroups, LiveGroupCounts
from .asyncapi import AsyncApi
from .auth import Authenticator
from .backends.base import Broker as BrokerContract
from .backends.base import Pipeline
from .backends.cluster import ClusterPipeline, cluster_enabled
from .backends.pipeline import Batcher
from .backends.sentinel import sentinel_pool
from .broker import Broker
from .config import Settings, load_settings, redis_db
from .devsecret import dev_secret
from .dialects.velt import velt_error
from .embedded import EmbeddedRedis, free_port
from .errors import FeedError
from .follow_routes import FollowApi
from .follow_service import FollowService
from .follows import Fanout, FanoutMetrics, FollowStore
from .http import (
    BodyLimits,
    PrincipalBackend,
    RateLimitMiddleware,
    auth_error_response,
    client_gone_handler,
    feed_error_handler,
    http_error_handler,
    internal_error_handler,
    json_response,
    problem_response,
)
from .hub import Hub
from .keys import Keys
from .metrics import Metrics
from .model_routes import ModelApi, describe
from .objects import ObjectService, ObjectStore
from .openapi import OpenApi
from .ratelimit import RateLimit
from .reactions import ReactionService, ReactionStore
from .routes import NativeApi, Readiness
from .service import FeedService
from .store import FeedStore
from .ws import WebSocketEndpoint

log = logging.getLogger("feedserver")

#: The live dashboard (client_example/web), served at /demo/ when [server] demo is on.
DEMO_DIR = Path(__file__).resolve().parent.parent / "client_example" / "web"
#: The interactive API docs (Swagger UI and the AsyncAPI page), installed with the package.
DOCS_DIR = Path(__file__).resolve().parent / "static" / "docs"

Scope = dict[str, Any]


class SigtermDrain:
    """SIGTERM → ``/readyz`` answers 503 for ``delay`` seconds, *then* uvicorn shuts down.

    uvicorn reacts to SIGTERM by closing its listeners and every WebSocket (1012) at once, so a
    load balancer still routing here would see refused connections. Installed over uvicorn's own
    handler (in every worker: each runs this lifespan), this first only flips readiness, keeps
    serving for ``delay`` seconds so health checks take the process out of rotation, and then
    hands the signal to uvicorn. A SIGINT during the drain (Ctrl-C) ends it at once; further
    SIGTERMs do not (with ``--workers`` a process may get one from systemd and one from uvicorn's
    supervisor). SIGINT alone shuts down at once, as uvicorn always does.
    """

    def __init__(self, delay: float, on_drain: Callable[[], None]) -> None:
        self.delay = delay
        self._on_drain = on_drain
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._state = "serving"  # → "draining" (SIGTERM seen) → "released" (handed to uvicorn)
        self._frame: FrameType | None = None

    @property
    def draining(self) -> bool:
        """True once SIGTERM arrived."""
        return self._state != "serving"

    def install(self) -> None:
        """Wrap the current SIGTERM/SIGINT handlers (uvicorn's); only in the main thread."""
        if self.delay <= 0 or threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if callable(previous):
                self._previous[sig] = previous
                signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Put the wrapped handlers back (if nobody replaced ours meanwhile)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        # A Python-level signal handler: runs in the main thread between two bytecodes.
        loop = self._loop
        if self._state == "serving" and sig == signal.SIGTERM and loop is not None and not loop.is_closed():
            self._state, self._frame = "draining", frame
            self._on_drain()
            loop.call_soon_threadsafe(self._arm)
        elif self._state == "draining":
            if sig == signal.SIGINT:  # Ctrl-C during the drain: stop draining now
                self._release()
            # another SIGTERM (systemd and uvicorn's supervisor may both send one): keep draining
        elif sig in self._previous:  # SIGINT, or anything after the drain: uvicorn's own handling
            self._previous[sig](sig, frame)

    def _arm(self) -> None:
        if self._state == "draining" and self._timer is None:
            log.warning("SIGTERM: draining for %.1fs (/readyz answers 503), then shutting down", self.delay)
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._release)

    def _release(self) -> None:
        """Hand the SIGTERM to uvicorn: it stops accepting and closes WebSockets with 1012."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._state == "draining":
            self._state = "released"
            if signal.SIGTERM in self._previous:
                self._previous[signal.SIGTERM](signal.SIGTERM, self._frame)


class FeedApp:
    """The ASGI application: ``/v1/ws`` goes straight to the WebSocket endpoint, the rest to Starlette."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        self.embedded: EmbeddedRedis | None = None
        url = s.redis.url
        if not url and not s.redis.sentinels:
            self.embedded = EmbeddedRedis(s.redis.data_dir, port=free_port(), appendfsync=s.redis.appendfsync)
            url = self.embedded.url
        self.redis_url = url
        secret = s.auth.jwt_secret
        if not secret and "HS256" in s.auth.jwt_algorithms:
            kept = dev_secret(s.redis.data_dir)
            secret = kept.secret
            log.warning("no [auth] jwt_secret configured: using the dev secret kept in %s (dev only)", kept.path)
        self.jwt_secret = secret

        self.metrics = Metrics()
        self.keys = Keys(s.redis.key_prefix)
        self.topology = self._topology(url)
        pipeline, broker_connections = self._pipeline(url)
        self.pipeline = pipeline
        self.store = FeedStore(
            pipeline,
            self.keys,
            max_feed_length=s.feeds.max_feed_length,
            resume_window=s.feeds.resume_window,
            retention_days=s.feeds.retention_days,
            timeout=s.redis.command_timeout,
            min_replica_acks=s.redis.min_replica_acks,
        )
        self.hub = Hub(self.store, self.metrics)
        self.broker: BrokerContract
        if self.topology == "cluster":
            self.broker = _cluster_broker([url, *s.redis.seeds], self.keys, self.hub, self.metrics, s)
        else:
            self.broker = Broker(
                broker_connections,
                self.keys,
                self.hub.on_event,
                self.hub.on_resync,
                subscribe_timeout=s.redis.command_timeout,
                on_state=self.metrics.pubsub_state,
                publish=self.store.publish_probe,
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
        self._setup_follows(url)
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
            require_exp=s.auth.require_exp,
        )
        self.readiness = Readiness(
            self.store.ping,
            lambda: self.broker.check_ready(s.redis.command_timeout),
        )
        self.drain = SigtermDrain(s.server.drain_delay, self.begin_drain)
        max_body = s.feeds.max_batch * s.feeds.max_activity_bytes + 65536
        self.native = NativeApi(self.service, self.metrics, max_body_bytes=max_body, readiness=self.readiness)
        self.ws = WebSocketEndpoint(
            self.service,
            self.auth,
            self.metrics,
            allowed_origins=s.server.allowed_origins,
            rate_limit=RateLimit.from_setting(s.server.ws_rate_limit),
            queue_size=s.server.queue_size,
            auth_timeout=s.server.auth_timeout,
            close_timeout=s.server.close_timeout,
        )
        self.openapi = OpenApi(
            max_batch=s.feeds.max_batch, max_page=s.feeds.max_page, max_activity_bytes=s.feeds.max_activity_bytes
        )
        self.asyncapi = AsyncApi()
        self.follow_api = FollowApi(self.follow_service, max_body_bytes=max_body)
        self.reaction_service = ReactionService(
            self.service,
            ReactionStore(
                self.pipeline, self.keys, timeout=s.redis.command_timeout, resume_window=s.feeds.resume_window
            ),
        )
        self.object_service = ObjectService(ObjectStore(self.pipeline, self.keys, timeout=s.redis.command_timeout))
        self.feed_groups = FeedGroups(s.feed_groups)
        self.hub.decorate = self.feed_groups.decorate
        self.aggregation = AggregationService(
            self.service,
            self.feed_groups,
            AggregationStore(self.pipeline, self.keys, self.store, timeout=s.redis.command_timeout),
        )
        # Notification feeds push their group counts after writes (user writes and follow copies).
        self.group_counts = LiveGroupCounts(self.aggregation)
        self.store.on_change = _each(self.store.on_change, self.group_counts.changed)
        self.copy_store.on_change = _each(self.copy_store.on_change, self.group_counts.changed)
        self.model_api = ModelApi(self.reaction_service, self.object_service, self.aggregation, max_body_bytes=max_body)
        self.native.enrich = self.model_api.enricher
        # Reactions go with their activity, whichever API deleted it (SPEC §12).
        self.service.after_delete.append(self.reaction_service.activities_deleted)
        describe(self.openapi, self.follow_api.routes(), "follows")
        describe(self.openapi, self.model_api.routes(), "reactions, users, collections, groups")
        from .dialects import dialect_routes  # seed dialects (SPEC §8), all through self.service
        from .dialects.getstream import getstream_routes  # SPEC §11; none without [getstream] api_key
        from .dialects.getstream.model import GetStreamModel  # SPEC §12 through the GetStream dialect

        self.dialect_shutdown: list[Callable[[], Awaitable[None]]] = []
        getstream = getstream_routes(
            self.service,
            s.getstream,
            self.pipeline,
            self.keys,
            max_body_bytes=max_body,
            timeout=s.redis.command_timeout,
            on_shutdown=self.dialect_shutdown,
            openapi=self.openapi,
            model=GetStreamModel(self.follow_service, self.aggregation, self.model_api.enricher),
        )

        routes: list[BaseRoute] = [
            *self.native.routes(),
            *self.follow_api.routes(),
            *self.model_api.routes(),
            *dialect_routes(self.service, self.openapi, max_body, extra=getstream),
            Route("/openapi.json", self._openapi_json, methods=["GET"]),
            Route("/asyncapi.json", self._asyncapi_json, methods=["GET"]),
            Route("/docs", self._docs, methods=["GET"]),
            Mount("/docs/static", app=StaticFiles(directory=DOCS_DIR), name="docs"),
        ]
        if s.server.demo and DEMO_DIR.is_dir():
            # Which feed groups are aggregated/notification feeds: the dashboard shows those as groups.
            group_types = {"feed_groups": {slug: {"type": g.type} for slug, g in s.feed_groups.items()}}

            async def demo_feed_groups(request: Request) -> Response:
                """The type of each configured feed group (for the dashboard at /demo/)."""
                return json_response(group_types)

            groups_route = Route("/demo/feed-groups.json", demo_feed_groups, methods=["GET"])
            describe(self.openapi, [groups_route], "demo")
            routes.append(groups_route)
            routes.append(Mount("/demo", app=StaticFiles(directory=DEMO_DIR, html=True), name="demo"))
        self.http = Starlette(
            routes=routes,
            lifespan=self._lifespan,
            middleware=[self._authentication()],
            exception_handlers={
                FeedError: feed_error_handler,
                ClientDisconnect: client_gone_handler,
                HTTPException: http_error_handler,
                Exception: internal_error_handler,
            },
        )
        http_limit = RateLimit.from_setting(s.server.http_rate_limit)
        self.http_app: Any = (
            self.http if http_limit is None else RateLimitMiddleware(self.http, http_limit, self._rate_limited)
        )
        self.http_app = BodyLimits(self.http_app, timeout=s.server.body_timeout, max_readers=s.server.max_body_readers)

    def _authentication(self) -> Middleware:
        """Credentials → ``request.user`` once per request, before routing (``http.PrincipalBackend``).
        GetStream's paths authenticate themselves (``api_key`` + its JWT); Velt's carry theirs in
        ``x-velt-auth-token``; WebSockets authenticate in their endpoints (``/v1/ws`` never gets here)."""
        from .dialects import velt
        from .dialects.getstream import PREFIX as GETSTREAM_PREFIX

        backend = PrincipalBackend(
            self.auth,
            own_auth=(GETSTREAM_PREFIX + "/", "/faye"),
            token_headers=((velt.PREFIX, velt.TOKEN_HEADER),),
        )
        return Middleware(AuthenticationMiddleware, backend=backend, on_error=auth_error_response)

    def _setup_follows(self, url: str) -> None:
        """Follows (SPEC §12): their store, the durable fan-out and use cases. The fan-out writes
        copies through a pipeline of its own, so copies never queue in front of user writes."""
        s = self.settings
        f = s.fanout
        self.follow_store = FollowStore(self.pipeline, self.keys, timeout=s.redis.command_timeout, max_jobs=f.max_jobs)
        # A round of copies may keep Redis busy for seconds: its own, longer, pipeline timeout.
        fan_pipeline, _ = self._pipeline(url, timeout=max(10.0, 4 * s.redis.command_timeout))
        self.copy_store = FeedStore(
            fan_pipeline,
            self.keys,
            max_feed_length=s.feeds.max_feed_length,
            resume_window=s.feeds.resume_window,
            retention_days=s.feeds.retention_days,
            timeout=max(s.redis.command_timeout, 5.0),
        )
        self.fanout = Fanout(
            self.follow_store,
            self.copy_store,
            FanoutMetrics(self.metrics.registry),
            events_per_batch=f.events_per_batch,
            followers_per_chunk=f.followers_per_chunk,
            jobs_per_read=f.jobs_per_read,
            lease_seconds=f.lease_seconds,
            claim_idle_seconds=f.claim_idle_seconds,
            sweep_seconds=f.sweep_seconds,
            poll_seconds=f.poll_seconds,
            run_workers=f.enabled,
        )
        self.store.on_change = self.fanout.changed
        self.follow_service = FollowService(self.service, self.follow_store, self.fanout)

    def _topology(self, url: str) -> str:
        """``single``, ``sentinel`` or ``cluster``, from ``[redis]`` (``cluster = "auto"``: ask the node)."""
        r = self.settings.redis
        if r.sentinels:
            return "sentinel"
        if self.embedded is not None or r.cluster == "off":
            return "single"
        urls = [url, *r.seeds]
        if r.cluster == "auto":
            found = cluster_enabled(urls, r.command_timeout)
            if found is None:
                log.warning(
                    'no Redis answered at %s: assuming one node (set [redis] cluster = "on" for a cluster)',
                    ", ".join(urls),
                )
                return "single"
            if not found[0]:
                return "single"
        for node_url in urls:
            if redis_db(node_url) != 0:
                raise ValueError(
                    f"[redis] url {node_url!r} is a Redis Cluster node, and a cluster has only database 0 "
                    f"(this URL names database {redis_db(node_url)}); drop the /N and isolate with key_prefix"
                )
        return "cluster"

    def _pipeline(self, url: str, timeout: float | None = None) -> tuple[Pipeline, str | ConnectionPool]:
        """The store's command path for this topology, and what the single-node broker connects with."""
        r = self.settings.redis
        timeout = timeout or r.command_timeout
        if self.topology == "cluster":
            return ClusterPipeline([url, *r.seeds], timeout=timeout), url
        pool: ConnectionPool
        if self.topology == "sentinel":
            pool = sentinel_pool(r.sentinels, r.sentinel_master, url, timeout=r.command_timeout)
        else:
            # No socket_timeout: redis-py would arm a timer for every read. The lanes bound each
            # pipeline themselves (command_timeout), and a cancelled read drops the connection.
            pool = ConnectionPool.from_url(
                url, socket_timeout=None, socket_connect_timeout=r.command_timeout, protocol=2
            )
        return Batcher(pool.make_connection, timeout=timeout), pool if self.topology == "sentinel" else url

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/v1/ws":
            await self.ws(scope, receive, send)
        else:
            await self.http_app(scope, receive, send)

    @staticmethod
    def _rate_limited(path: str, exc: FeedError) -> Response:
        if path.startswith("/api/v1.0/"):  # GetStream clients read only GetStream's error shape
            from .dialects.getstream.shapes import as_getstream, error_body

            error = as_getstream(exc)
            return json_response(error_body(error, "0.00ms"), error.status)
        return velt_error(exc) if path.startswith("/v2/activities/") else problem_response(exc, path)

    def begin_drain(self) -> None:
        """Start answering ``/readyz`` with 503 (shutdown is coming); everything else keeps working."""
        self.readiness.draining = True

    async def _openapi_json(self, request: Request) -> Response:
        return json_response(self.openapi.document())

    async def _asyncapi_json(self, request: Request) -> Response:
        return json_response(self.asyncapi.document(request.headers.get("host") or request.url.netloc))

    async def _docs(self, request: Request) -> Response:
        return FileResponse(DOCS_DIR / "index.html", media_type="text/html")

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.lock)  # may wait for a dead predecessor's Valkey
            self.embedded.launch()  # on the loop's thread: Valkey's death signal follows this thread
            await asyncio.to_thread(self.embedded.wait_ready)
        try:
            await self.broker.start()
            if not self.broker.connected:
                log.warning("Redis pub/sub is not reachable yet at startup; retrying in the background")
            self.drain.install()
            await self.fanout.start()
            yield
        finally:
            await self.fanout.close()
            await self.group_counts.close()
            self.drain.uninstall()
            self.begin_drain()
            # uvicorn has already sent 1012 to every WebSocket it knew; this catches the rest.
            self.ws.close_all(1012, "server restarting")
            for close in self.dialect_shutdown:
                await close()
            await self.hub.close()
            await self.broker.close()
            await self.store.close()
            await self.copy_store.close()
            if self.embedded is not None:
                await asyncio.to_thread(self.embedded.stop)


def _each(*callbacks: Callable[..., None] | None) -> Callable[..., None]:
    """One ``on_change`` callback calling each of ``callbacks`` (None ones left out) in turn."""
    chosen = [c for c in callbacks if c is not None]

    def call(*args: Any) -> None:
        for callback in chosen:
            callback(*args)

    return call


def _cluster_broker(urls: list[str], keys: Keys, hub: Hub, metrics: Metrics, s: Settings) -> BrokerContract:
    """The sharded pub/sub broker of a cluster (``backends.cluster_broker``, one connection per master)."""
    from .backends.cluster_broker import ClusterBroker

    return ClusterBroker(
        urls,
        keys,
        hub.on_event,
        hub.on_resync,
        subscribe_timeout=s.redis.command_timeout,
        on_state=metrics.pubsub_state,
        metrics=metrics,
    )


def create_app(settings: Settings | None = None) -> FeedApp:
    """Build the ASGI app from ``settings`` (default: ``config.toml`` and ``FEED_*`` variables)."""
    return FeedApp(settings or load_settings())


def app_from_env() -> FeedApp:
    """uvicorn factory for worker processes: settings from ``$FEED_CONFIG`` and the environment."""
    return create_app(load_settings())
