"""GetStream Activity Feeds v2 compatibility (SPEC §11): the official clients, unmodified.

- ``shapes``: GetStream's activity, time and error shapes (pure).
- ``auth``: ``api_key`` + raw JWT scopes → our ``Principal`` (pure).
- ``index``: activity id / (foreign_id, time) → feeds, for GetStream's feed-less addressing.
- ``api``: the ``/api/v1.0/`` handlers, through ``FeedService``.
- ``..bayeux``: the realtime endpoint (``/faye``) the JS client's ``feed.subscribe`` talks to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ...calls import Calls
from .api import DETACHED_FEED, PREFIX, GetStreamApi
from .auth import Caller, GetStreamAuth
from .index import ActivityIndex

if TYPE_CHECKING:  # pragma: no cover - typing only
    from collections.abc import Callable

    from starlette.routing import BaseRoute

    from ...backends.base import Pipeline
    from ...config import GetStreamSettings
    from ...keys import Keys
    from ...openapi import OpenApi
    from ...service import FeedService


def getstream_routes(
    service: FeedService,
    settings: GetStreamSettings,
    pipeline: Pipeline,
    keys: Keys,
    *,
    max_body_bytes: int,
    timeout: float,
    model: Callable[[GetStreamApi], None] | None = None,
    on_shutdown: list[Callable[[], Awaitable[None]]] | None = None,
    openapi: OpenApi | None = None,
) -> list[BaseRoute]:
    """The GetStream routes (``/api/v1.0/…`` and ``/faye``); none when ``api_key`` is empty.
    ``on_shutdown`` receives what the app must await when it stops (the Bayeux endpoint's close).
    ``openapi`` gets the flat-feed paths described (``describe``). Redis is reached only through
    ``pipeline`` (the app's shared command pipeline, any topology)."""
    if not settings.api_key:
        return []
    if not settings.api_secret:
        raise ValueError("[getstream] api_key is set but api_secret is empty")
    from ..bayeux import BayeuxEndpoint

    auth = GetStreamAuth(settings.api_key, settings.api_secret)
    calls = Calls(pipeline, timeout)
    index = ActivityIndex(calls, keys, settings.app_id)
    service.after_post.append(index.record_bodies)
    api = GetStreamApi(service, auth, index, max_body_bytes=max_body_bytes)
    if model is not None:
        model(api)
    if openapi is not None:
        from .describe import describe

        describe(openapi, model=model is not None)
    bayeux = BayeuxEndpoint(service, auth, calls, keys, settings)
    if on_shutdown is not None:
        on_shutdown.append(bayeux.close)
    return [*api.routes(), *bayeux.routes()]


__all__ = ["DETACHED_FEED", "PREFIX", "ActivityIndex", "Caller", "GetStreamApi", "GetStreamAuth", "getstream_routes"]
