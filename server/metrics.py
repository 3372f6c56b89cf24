"""Prometheus metrics (prometheus-client), one registry per app.

With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set by the CLI), values live in the
library's shared files and ``/metrics`` aggregates every process.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every metric the server exports; the hub and the services call the small methods below."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "feed_ws_connections", "Open WebSocket connections", registry=r, multiprocess_mode="livesum"
        )
        self.subscription_count = Gauge(
            "feed_subscriptions", "Active feed subscriptions", registry=r, multiprocess_mode="livesum"
        )
        self.writes = Counter(
            "feed_activity_writes", "Activities written (created, updated or deleted)", ["op"], registry=r
        )
        self.deliveries = Counter("feed_deliveries", "Event frames handed to subscribers", registry=r)
        self.drops = Counter("feed_slow_consumer_closes", "Connections closed with 4008 (queue overflow)", registry=r)
        self.gaps = Counter("feed_gap_events_filled", "Events fetched from the change log to fill gaps", registry=r)
        self.resets = Counter("feed_resets", "Subscribers told to reload (reset)", registry=r)
        self.write_latency = Histogram(
            "feed_write_seconds",
            "Time to store and publish one write request",
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.redis_errors = Counter("feed_redis_unavailable", "Requests refused with 503 (Redis)", registry=r)
        self.pubsub_up = Gauge(
            "feed_pubsub_up", "1 while this process's pub/sub connection is up", registry=r, multiprocess_mode="livesum"
        )
        self.pubsub_reconnects = Counter(
            "feed_pubsub_reconnects", "Pub/sub connections re-established (each re-syncs every feed)", registry=r
        )
        self._pubsub_seen = False
        # Per cluster node (label node="host:port"); see backends.cluster_broker.
        self.node_up = Gauge(
            "feed_cluster_node_connected",
            "1 while this process's pub/sub connection to the node is up",
            ["node"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.node_slot_count = Gauge(
            "feed_cluster_node_slots",
            "Slots the node owns as a master (0 once it is not a master), as last read by this process",
            ["node"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.node_replaced = Counter(
            "feed_cluster_channels_replaced",
            "Lost pub/sub channels confirmed again on the node (each feed re-synced from its log)",
            ["node"],
            registry=r,
        )
        self.node_failovers = Counter(
            "feed_cluster_failovers_seen",
            "Times the node stopped being a master of slots it owned (failover, crash, slots moved away)",
            ["node"],
            registry=r,
        )

    def pubsub_state(self, up: bool) -> None:
        """The broker's connection went up (True) or down (False)."""
        self.pubsub_up.set(1 if up else 0)
        if up:
            if self._pubsub_seen:
                self.pubsub_reconnects.inc()
            self._pubsub_seen = True

    # ClusterBroker's ClusterStats protocol ---------------------------------------------------------

    def node_connected(self, node: str, up: bool) -> None:
        """The pub/sub connection to ``node`` went up or down."""
        self.node_up.labels(node).set(1 if up else 0)

    def node_slots(self, node: str, slots: int) -> None:
        """``node`` owns ``slots`` slots."""
        self.node_slot_count.labels(node).set(slots)

    def channels_replaced(self, node: str, n: int) -> None:
        """``n`` lost channels were confirmed again on ``node``."""
        self.node_replaced.labels(node).inc(n)

    def failover_seen(self, node: str) -> None:
        """``node`` stopped being a master."""
        self.node_failovers.labels(node).inc()

    # Hub's Stats protocol ------------------------------------------------------------------------

    def delivered(self, n: int) -> None:
        """``n`` frames handed to subscribers."""
        self.deliveries.inc(n)

    def gap_filled(self, n: int) -> None:
        """``n`` events fetched from the change log."""
        self.gaps.inc(n)

    def reset_sent(self, n: int) -> None:
        """``n`` subscribers told to reload."""
        self.resets.inc(n)

    def subscriptions(self, delta: int) -> None:
        """Subscriptions opened (+) or closed (-)."""
        self.subscription_count.inc(delta)

    def render(self) -> bytes:
        """The Prometheus text exposition (all processes when running multi-process)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
