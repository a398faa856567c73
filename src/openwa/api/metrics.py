"""Prometheus metrics, in a registry per app so that several apps can live in one process.

Besides the HTTP requests: what the gateway moved (events logged, webhook attempts by
result, deliveries given up) counted by this instance as each commits, and what waits
to go out (deliveries, sends, engine reports), read at each scrape. A webhook receiver
that has been failing for an hour shows as a growing backlog and an old oldest
delivery, not only in its delivery log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_Children = tuple[Counter, Histogram]


UNKNOWN = float("nan")  # a gauge the scrape could not read (the database did not answer)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits to go out, at the moment of a scrape."""

    deliveries_pending: float  # webhook deliveries not yet made, every instance's
    oldest_delivery_s: float  # age of the oldest of them (0 when none)
    sends_due: float  # accepted sends due and not yet handed to their engine
    sends_scheduled: float  # accepted sends due later (`sendAt`)
    reports_queued: int  # engine reports waiting to be written, on this instance
    held_back: int  # sessions whose engine is asked to hold back (engines/flow.py), here
    # Webhooks OpenWA switched off for failing too long (webhooks/failing.py): their
    # queues leave `deliveries_pending` then, and wait for a client.
    webhooks_switched_off: float = 0.0
    # Engine reports the core could not store, kept in `set_aside_reports` (every
    # instance's): each is a message or change no event announced.
    reports_set_aside: float = 0.0

    @classmethod
    def unread(cls, reports_queued: int, held_back: int) -> Backlog:
        return cls(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, reports_queued, held_back, UNKNOWN, UNKNOWN)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "openwa_http_requests_total",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "openwa_http_request_duration_seconds",
            "HTTP request latency by route template and method",
            ["method", "route"],
            registry=self.registry,
        )
        self.sessions = Gauge(
            "openwa_sessions",
            "Sessions by status (all sessions in the database)",
            ["status"],
            registry=self.registry,
        )
        self.running = Gauge(
            "openwa_sessions_running",
            "Sessions with a live engine client on this instance",
            registry=self.registry,
        )
        self.events = Counter(
            "openwa_events_total",
            "Events this instance logged (committed), by event name",
            ["event"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "openwa_webhook_attempts_total",
            "Webhook delivery attempts this instance recorded, by result",
            ["result"],
            registry=self.registry,
        )
        self.webhooks_given_up = Counter(
            "openwa_webhook_deliveries_failed_total",
            "Webhook deliveries that ran out of attempts (failed; replayable) on this instance",
            registry=self.registry,
        )
        self.deliveries_pending = Gauge(
            "openwa_webhook_deliveries_pending",
            "Webhook deliveries not yet made (every instance's)",
            registry=self.registry,
        )
        self.oldest_delivery = Gauge(
            "openwa_webhook_delivery_oldest_pending_seconds",
            "Age of the oldest webhook delivery not yet made (0 when none)",
            registry=self.registry,
        )
        self.webhooks_switched_off = Gauge(
            "openwa_webhooks_switched_off",
            "Webhooks OpenWA switched off after WEBHOOK_DISABLE_AFTER_DAYS of failures"
            " (their waiting deliveries wait for a client to switch them on)",
            registry=self.registry,
        )
        self.sends_queued = Gauge(
            "openwa_sends_queued",
            "Accepted sends not yet handed to their engine: due now, or scheduled later",
            ["state"],
            registry=self.registry,
        )
        self.reports_queued = Gauge(
            "openwa_engine_reports_queued",
            "Engine reports (messages, acks, changes) waiting to be written, on this instance",
            registry=self.registry,
        )
        self.held_back = Gauge(
            "openwa_engine_sessions_held_back",
            "Sessions whose engine is asked to hold back: their reports are at"
            " ENGINE_REPORT_QUEUE_MAX, on this instance",
            registry=self.registry,
        )
        self.reports_set_aside = Gauge(
            "openwa_engine_reports_set_aside",
            "Engine reports the core could not store, kept in set_aside_reports for"
            " inspection (every instance's): no event announced them",
            registry=self.registry,
        )
        # Labelled children by (method, route, status): looking them up through
        # `labels()` on every request was a tenth of a cheap request's cost.
        self._children: dict[tuple[str, str, int], _Children] = {}
        self._event_children: dict[str, Counter] = {}
        self._succeeded = self.webhook_attempts.labels("succeeded")
        self._failed = self.webhook_attempts.labels("failed")

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def events_logged(self, names: Sequence[str]) -> None:
        for name in names:
            child = self._event_children.get(name)
            if child is None:
                child = self._event_children[name] = self.events.labels(name)
            child.inc()

    def webhook_results(self, succeeded: int, failed: int, given_up: int) -> None:
        if succeeded:
            self._succeeded.inc(succeeded)
        if failed:
            self._failed.inc(failed)
        if given_up:
            self.webhooks_given_up.inc(given_up)

    def render(self, sessions_by_status: dict[str, int], running: int, backlog: Backlog) -> bytes:
        self.sessions.clear()
        for status, count in sessions_by_status.items():
            self.sessions.labels(status).set(count)
        self.running.set(running)
        self.deliveries_pending.set(backlog.deliveries_pending)
        self.oldest_delivery.set(backlog.oldest_delivery_s)
        self.webhooks_switched_off.set(backlog.webhooks_switched_off)
        self.sends_queued.labels("due").set(backlog.sends_due)
        self.sends_queued.labels("scheduled").set(backlog.sends_scheduled)
        self.reports_queued.set(backlog.reports_queued)
        self.held_back.set(backlog.held_back)
        self.reports_set_aside.set(backlog.reports_set_aside)
        return generate_latest(self.registry)
