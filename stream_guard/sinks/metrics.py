"""Prometheus metrics of a running server, on a private registry (never the process-global one).

A private :class:`prometheus_client.CollectorRegistry` keeps two servers in one process (tests, embedding)
from colliding and keeps library-level default collectors out unless asked for. ``/metrics`` serves
:meth:`ServerMetrics.render`. Names follow Prometheus conventions (``_total`` counters, base units in
seconds).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FIRST_SCORE_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class ServerMetrics:
    """All metrics the server exports; methods are cheap enough to call per message."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "streamguard_connections", "Open websocket connections", ["endpoint"], registry=r
        )
        self.active_streams = Gauge(
            "streamguard_active_streams", "Streams being scored", ["protocol"], registry=r
        )
        self.streams = Counter("streamguard_streams", "Streams opened", ["protocol"], registry=r)
        self.messages = Counter(
            "streamguard_protocol_messages", "Messages received", ["protocol"], registry=r
        )
        self.notices = Counter(
            "streamguard_protocol_notices",
            "Non-fatal protocol events (gaps, repeats)",
            ["protocol", "kind"],
            registry=r,
        )
        self.audio_seconds = Counter(
            "streamguard_audio_seconds", "Audio received (s)", ["protocol"], registry=r
        )
        self.windows = Counter("streamguard_windows_scored", "Windows scored", registry=r)
        self.dropped = Counter("streamguard_windows_dropped", "Windows dropped under overload", registry=r)
        self.skipped = Counter(
            "streamguard_windows_skipped", "Windows that abstained without inference", registry=r
        )
        self.latency = Histogram(
            "streamguard_window_latency_seconds",
            "From a window's last sample arriving to its score event",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_score = Histogram(
            "streamguard_time_to_first_score_seconds",
            "From a stream's start to its first score event",
            buckets=FIRST_SCORE_BUCKETS,
            registry=r,
        )
        self.alerts = Counter("streamguard_alerts", "Alert state changes", ["state"], registry=r)
        self.rejects = Counter(
            "streamguard_rejects", "Connections or streams refused", ["reason"], registry=r
        )
        self.errors = Counter(
            "streamguard_errors", "Connections closed for bad input", ["protocol", "code"], registry=r
        )
        self.webhook_attempts = Counter(
            "streamguard_webhook_attempts", "Webhook delivery attempts by HTTP status", ["status"], registry=r
        )
        self.outbox = Gauge("streamguard_webhook_outbox", "Webhook messages by state", ["state"], registry=r)

    def set_outbox_source(self, counts: Callable[[], dict[str, int]]) -> None:
        """Read outbox counts lazily at scrape time (cheap SQL COUNT)."""
        for state in ("pending", "delivered", "dead"):
            self.outbox.labels(state).set_function(lambda s=state: float(counts().get(s, 0)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
