"""Prometheus metrics, one registry per app so several apps can live in one process (tests, bench)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.received = Counter("copilot_messages_received", "Inbound messages accepted into the inbox", ["channel"], registry=r)
        self.deduplicated = Counter("copilot_messages_deduplicated", "Duplicate deliveries acknowledged and dropped", ["channel"], registry=r)
        self.processed = Counter("copilot_messages_processed", "Messages processed and answered", ["channel"], registry=r)
        self.failed = Counter("copilot_messages_failed", "Processing attempts that failed", ["channel"], registry=r)
        self.dead = Counter("copilot_messages_dead", "Messages that exhausted their retries", ["channel"], registry=r)
        self.rejected = Counter("copilot_requests_rejected", "Requests refused (bad signature, bad body, rate limit)", ["channel", "reason"], registry=r)
        self.sent = Counter("copilot_replies_sent", "Replies delivered", ["channel"], registry=r)
        self.send_failed = Counter("copilot_replies_send_failed", "Reply delivery attempts that failed", ["channel"], registry=r)
        self.ack_latency = Histogram("copilot_ack_latency_seconds", "Time from request to acknowledgement", ["channel"], buckets=_LATENCY, registry=r)
        self.process_latency = Histogram("copilot_process_latency_seconds", "Time to process one message", ["channel"], buckets=_LATENCY, registry=r)
        self.inbox_depth = Gauge("copilot_inbox_unfinished", "Messages not yet processed", registry=r)
        self.dead_letters = Gauge("copilot_dead_letters", "Inbox and outbound rows in the dead-letter state", ["kind"], registry=r)
        self.redis_fallbacks = Counter("copilot_redis_fallbacks", "Uses of Redis served without it, unreachable (token, limit, replay)",
                                       ["use"], registry=r)
        self.console_render = Histogram("copilot_console_render_seconds", "Server-side time to build one console page (GET)", ["page"],
                                        buckets=_LATENCY, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
