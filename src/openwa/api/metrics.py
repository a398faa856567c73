"""Prometheus metrics, in a registry per app so that several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_Children = tuple[Counter, Histogram]


class HttpMetrics:
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
        # Labelled children by (method, route, status): looking them up through
        # `labels()` on every request was a tenth of a cheap request's cost.
        self._children: dict[tuple[str, str, int], _Children] = {}

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

    def render(self, sessions_by_status: dict[str, int], running: int) -> bytes:
        self.sessions.clear()
        for status, count in sessions_by_status.items():
            self.sessions.labels(status).set(count)
        self.running.set(running)
        return generate_latest(self.registry)
