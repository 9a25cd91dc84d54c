"""/metrics (Prometheus text, token-protected), /healthz and /readyz (no token)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from callcenter.api.metrics import ROUTING_LATENCY
from tests.integration.test_api_support import api_env, floor


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_describe_the_floor(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        floor(env)
        before = ROUTING_LATENCY.collect()[0]
        count_before = next(s.value for s in before.samples if s.name.endswith("_count"))
        ROUTING_LATENCY.observe(0.012)  # what the routing shell does per decision
        status, text, resp = await env.req("GET", "/metrics", "analyst")
        assert status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        m = samples(text)
        assert m[("callcenter_live_calls", (("stage", "talking"),))] == 1
        assert m[("callcenter_live_calls", (("stage", "queue"),))] == 2
        assert m[("callcenter_queue_waiting", (("queue", "sales"),))] == 1
        assert m[("callcenter_queue_longest_wait_seconds", (("queue", "support"),))] == 10.0
        assert m[("callcenter_queue_agents", (("queue", "sales"), ("state", "busy")))] == 1
        assert m[("callcenter_pbx_connected", (("pbx", "ast1"),))] == 1
        assert ("callcenter_recorder_backlog_rows", ()) in m
        assert m[("callcenter_sse_clients", ())] == 0
        assert m[("callcenter_webhook_failures_total", ())] == 0
        assert m[("callcenter_routing_latency_seconds_count", ())] == count_before + 1
        assert m[("callcenter_routing_latency_seconds_bucket", (("le", "0.025"),))] >= 1
        assert m[("callcenter_controller_events_total", ())] > 0
        env.pbx.connected = False
        m = samples((await env.req("GET", "/metrics"))[1])
        assert m[("callcenter_pbx_connected", (("pbx", "ast1"),))] == 0


async def test_health_and_readiness(database, tmp_path) -> None:
    async with api_env(database, tmp_path) as env:
        status, body, _ = await env.req("GET", "/healthz", who=None)
        assert (status, body) == (200, {"status": "ok"})
        status, body, _ = await env.req("GET", "/readyz", who=None)
        assert (status, body) == (200, {"status": "ready", "checks": {"database": "ok", "pbx:ast1": "ok"}})
        env.pbx.connected = False
        status, body, _ = await env.req("GET", "/readyz", who=None)
        assert status == 503 and body["checks"]["pbx:ast1"] == "disconnected" and body["status"] == "not ready"
