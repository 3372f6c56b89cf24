"""Minimal Django settings for the Channels peer: no database, no middleware, just a channel layer.

The channel layer is channels_redis. ``CHANNEL_LAYER=pubsub`` (the default here) selects
``RedisPubSubChannelLayer``, which publishes a ``group_send`` once per group -- the fastest option
channels_redis offers for fan-out and the fair one to compare against. ``CHANNEL_LAYER=core``
selects the classic ``RedisChannelLayer`` (one Redis list entry per group member).
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
ROOT_URLCONF = "benchpeer.urls"
ASGI_APPLICATION = "benchpeer.asgi.application"
USE_TZ = True
LOGGING_CONFIG = None

_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_LAYER = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}[os.environ.get("CHANNEL_LAYER", "pubsub")]

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": _LAYER,
        # capacity: a group member's buffer; 1000 subscribers x bursts need room
        "CONFIG": {"hosts": [_REDIS_URL], **({"capacity": 10000} if _LAYER.endswith("RedisChannelLayer") else {})},
    }
}
