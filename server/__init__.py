"""Real-time activity feed server: activities stored in Redis, pushed live to their audience."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .app import FeedApp, create_app
    from .config import Settings, load_settings

__all__ = ["FeedApp", "Settings", "__version__", "create_app", "load_settings"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import server` (e.g. for __version__) does not pull in Redis and Starlette.
    if name in ("create_app", "FeedApp"):
        from . import app

        return getattr(app, name)
    if name in ("Settings", "load_settings"):
        from . import config

        return getattr(config, name)
    raise AttributeError(name)
