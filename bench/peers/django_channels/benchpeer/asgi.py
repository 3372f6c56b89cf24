"""ASGI entry point: ``uvicorn benchpeer.asgi:application`` (run from bench/peers/django_channels)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchpeer.settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import FeedConsumer  # noqa: E402

application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/", FeedConsumer.as_asgi())])})
