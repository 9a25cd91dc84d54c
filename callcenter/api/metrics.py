"""Prometheus metrics of the process, rendered at ``/metrics``.

``ROUTING_LATENCY`` lives in a process-wide registry so that the routing shell can observe into
it without knowing about the HTTP app (``ROUTING_LATENCY.observe(seconds)``). Everything that
belongs to one API app (webhook deliveries, SSE clients) and the gauges read from the live
state at scrape time live in the app's own registry: several apps in one process (tests) never
clash over metric names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from callcenter.api.context import ApiContext

PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)

ROUTING_LATENCY = Histogram(
    "callcenter_routing_latency_seconds",
    "Time from a call reaching the controller to its routing decision being sent",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=PROCESS_REGISTRY,
)

STAGES = ("arrived", "ivr", "queue", "ringing", "talking")


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhook_deliveries = Counter(
            "callcenter_webhook_deliveries", "Webhook delivery attempts by result (ok, retry, failed)",
            ["result"], registry=self.registry)
        self.webhook_failures = Counter(
            "callcenter_webhook_failures", "Webhook notifications given up on after the last attempt",
            registry=self.registry)
        self.webhook_dropped = Counter(
            "callcenter_webhook_dropped", "Notifications dropped because the webhook queue was full",
            registry=self.registry)
        self.sse_clients = 0
        self.http_errors = Counter("callcenter_http_server_errors", "HTTP 5xx answers of the API",
                                   registry=self.registry)


class LiveCollector(Collector):
    """Gauges read from the controller when scraped (nothing to keep in step)."""

    def __init__(self, ctx: ApiContext, metrics: ApiMetrics) -> None:
        self.ctx = ctx
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        c = self.ctx.controller
        now = c.clock()
        calls = GaugeMetricFamily("callcenter_live_calls", "Calls in progress by stage", labels=["stage"])
        counts = dict.fromkeys(STAGES, 0)
        for call in c.live.calls.values():
            counts[call.stage] = counts.get(call.stage, 0) + 1
        for stage, n in sorted(counts.items()):
            calls.add_metric([stage], n)
        yield calls
        waiting = GaugeMetricFamily("callcenter_queue_waiting", "Callers waiting", labels=["queue"])
        longest = GaugeMetricFamily("callcenter_queue_longest_wait_seconds", "Longest current wait",
                                    labels=["queue"])
        ewt = GaugeMetricFamily("callcenter_queue_estimated_wait_seconds", "Estimated wait of a new caller",
                                labels=["queue"])
        agents = GaugeMetricFamily("callcenter_queue_agents", "Queue members by state",
                                   labels=["queue", "state"])
        for name in sorted(c.live.queues):
            s = c.live.queue_stats(name, now)
            waiting.add_metric([name], s.waiting)
            longest.add_metric([name], s.longest_wait_s)
            ewt.add_metric([name], s.estimated_wait_s)
            for state, n in (("available", s.available), ("busy", s.busy), ("paused", s.paused),
                             ("logged_in", s.logged_in)):
                agents.add_metric([name, state], n)
        yield from (waiting, longest, ewt, agents)
        link = GaugeMetricFamily("callcenter_pbx_connected", "1 while the control link to the PBX is up",
                                 labels=["pbx"])
        for name, adapter in sorted(c.adapters.items()):
            link.add_metric([name], 1.0 if adapter.connected else 0.0)
        yield link
        yield GaugeMetricFamily("callcenter_recorder_backlog_rows",
                                "Journey rows not yet committed to the database",
                                value=_backlog(c.recorder))
        yield GaugeMetricFamily("callcenter_sse_clients", "Open event streams", value=self.metrics.sse_clients)
        stats = c.stats
        for field, help_ in (("events", "PBX events handled"), ("commands", "Commands sent to PBXs"),
                             ("command_failures", "Commands that failed"),
                             ("handler_errors", "Events whose handling raised")):
            yield CounterMetricFamily(f"callcenter_controller_{field}", help_, value=getattr(stats, field))


def _backlog(recorder: Any) -> float:
    try:
        return float(recorder.backlog_rows)
    except Exception:  # a recorder being torn down must not break a scrape
        return float("nan")


def render(metrics: ApiMetrics) -> bytes:
    return generate_latest(PROCESS_REGISTRY) + generate_latest(metrics.registry)
