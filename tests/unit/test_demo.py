"""The demo's pure parts: the table's aggregation, response parsing, and the judge's scores."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from features.catalog import load_catalog
from features.schema import TASK_TYPES
from simulator.ground_truth import quality_probability
from simulator.workload import US_PER_HOUR, WorkloadParams, iter_sim_requests
from simulator.world import TenantParams, build_world
from switchyard_cli.demo import send_request
from switchyard_cli.demo_table import DemoStats, RequestResult, format_table
from switchyard_cli.demo_traffic import Judge, PreparedRequest, judge_keys, judge_score
from switchyard_cli.main import app

CATALOG = load_catalog()
OPUS, HAIKU = "claude-opus-4-5", "claude-haiku-4-5"


@pytest.fixture(scope="module")
def world():
    return build_world(5, tenant_params=TenantParams(n_tenants=20))


@pytest.fixture(scope="module")
def sim(world):
    """A short first-turn request of the world (its truth is replaced per test)."""
    requests = iter_sim_requests(
        world, WorkloadParams(), seed=1, start_us=1_793_491_200 * 10**6 + 14 * US_PER_HOUR
    )
    return next(r for r in itertools.islice(requests, 500) if r.turn == 1 and r.prompt_tokens < 16_000)


def answered(
    sku: str, *, ttft: float | None = None, attempts: int = 1, at: float = 1.0, **usage: int
) -> RequestResult:
    return RequestResult(
        "t", ttft is not None, at, 100.0, status=200, request_id="req_1", sku=sku, attempts=attempts, ttft_ms=ttft,
        input_tokens=usage.get("input", 1000), cached_tokens=usage.get("cached", 0), output_tokens=usage.get("output", 100),
    )  # fmt: skip


def test_rows_give_share_cost_ttft_and_fallbacks_per_sku() -> None:
    stats = DemoStats(CATALOG, started_at=0.0)
    stats.add(answered(OPUS, ttft=100.0, input=2000, cached=3000, output=300))
    stats.add(answered(OPUS, attempts=2, input=500, output=50))  # not a stream: no TTFT
    stats.add(answered(HAIKU, ttft=40.0))
    stats.add(answered(OPUS, ttft=300.0, attempts=3))
    stats.add(RequestResult("t", False, 1.0, 5.0, status=529, error_type="overloaded_error"))
    stats.add(
        RequestResult("t", True, 1.0, 5.0, status=200, sku=HAIKU, error_type="api_error")
    )  # broke mid-stream
    stats.add(RequestResult("t", False, 1.0, 5.0, error_type="connection_error"))

    opus, haiku, total = stats.rows()
    assert (opus.sku, opus.responses, haiku.sku, haiku.responses, total.sku, total.responses) == (
        OPUS, 3, HAIKU, 1, "all", 4
    )  # fmt: skip
    assert opus.share == pytest.approx(0.75) and haiku.share == pytest.approx(0.25) and total.share == 1.0
    costs = [
        CATALOG.request_cost_usd(OPUS, input_tokens=2000, cached_tokens=3000, output_tokens=300),
        CATALOG.request_cost_usd(OPUS, input_tokens=500, cached_tokens=0, output_tokens=50),
        CATALOG.request_cost_usd(OPUS, input_tokens=1000, cached_tokens=0, output_tokens=100),
    ]
    haiku_cost = CATALOG.request_cost_usd(HAIKU, input_tokens=1000, cached_tokens=0, output_tokens=100)
    assert opus.cost_per_request_usd == pytest.approx(sum(costs) / 3)
    assert total.cost_per_request_usd == pytest.approx((sum(costs) + haiku_cost) / 4)
    assert opus.ttft_p50_ms == pytest.approx(200.0) and opus.ttft_p99_ms == pytest.approx(298.0)
    assert total.ttft_p50_ms == pytest.approx(100.0)
    assert (opus.fallbacks, haiku.fallbacks, total.fallbacks) == (2, 0, 2)
    assert dict(stats.errors) == {"overloaded_error": 1, "api_error": 1, "connection_error": 1}


def test_request_rate_counts_recent_completions() -> None:
    stats = DemoStats(CATALOG, started_at=0.0)
    for second in range(10):
        for _ in range(second):  # 0, 1, ..., 9 completions in second 0..9
            stats.add(answered(HAIKU, at=second + 0.5))
    recent, overall = stats.rates(now=10.0)
    assert recent == pytest.approx((5 + 6 + 7 + 8 + 9) / 5.0)
    assert overall == pytest.approx(45 / 10.0)


def test_text_table_lists_skus_most_answers_first_then_the_total() -> None:
    stats = DemoStats(CATALOG, started_at=0.0)
    for sku in (HAIKU, OPUS, HAIKU):
        stats.add(answered(sku, ttft=50.0))
    stats.add(RequestResult("t", False, 1.0, 1.0, status=429, error_type="rate_limit_error"))
    stats.feedback_sent = 3
    lines = format_table(stats, now=2.0).splitlines()
    assert lines[0].split()[:3] == ["SKU", "responses", "share"]
    assert [line.split()[0] for line in lines[1:4]] == [HAIKU, OPUS, "all"]
    assert lines[1].split()[1:3] == ["2", "66.7%"]
    assert "errors: rate_limit_error 1" in lines
    assert "judge feedback: 3 recorded, 0 failed" in lines


def test_judge_scores_like_the_bootstrap(world, sim) -> None:
    """Binary labels: good with the true quality probability, flipped at the judge's flip rate."""
    truth = world.truth
    hard = dataclasses.replace(sim, task="math", difficulty=0.9)
    draws = 5_000
    for sku, truncated in ((OPUS, False), (HAIKU, False), (OPUS, True)):
        rng = np.random.default_rng(0)
        scores = np.array([judge_score(truth, hard, sku, truncated, rng) for _ in range(draws)])
        assert set(np.unique(scores)) <= {0.0, 1.0}
        p = quality_probability(
            truth, [truth.index(sku)], [TASK_TYPES.index("math")], [0.9], [hard.prompt_tokens], [truncated]
        )[0]
        flip = truth.params.judge_flip_rate
        expected = p * (1 - flip) + (1 - p) * flip
        assert scores.mean() == pytest.approx(expected, abs=4 * np.sqrt(expected * (1 - expected) / draws))
    rng = np.random.default_rng(1)
    easy = dataclasses.replace(sim, task="chat", difficulty=0.05)
    easy_mean = np.mean([judge_score(truth, easy, HAIKU, False, rng) for _ in range(1000)])
    hard_mean = np.mean([judge_score(truth, hard, HAIKU, False, rng) for _ in range(1000)])
    assert easy_mean > hard_mean + 0.5  # the truth, not noise: easy chat is what a small model does well


def test_judge_posts_only_for_answers_as_an_internal_tenant_of_the_region(world, sim) -> None:
    keys = {t.tenant_id: f"key-{t.tenant_id}" for t in world.tenants}
    by_region = judge_keys(world, keys)
    assert by_region == {region: f"key-claude-app-{region}" for region in ("us", "eu", "apac")}
    assert judge_keys(world, {k: v for k, v in keys.items() if not k.startswith("claude-app")}) == {}

    item = PreparedRequest(sim, b"{}", "tenant-key")
    judge = Judge(world, by_region, share=1.0, seed=0)
    key, body = judge.feedback(item, answered(OPUS))  # type: ignore[misc]
    assert key == by_region[sim.tenant.region]
    assert body["request_id"] == "req_1" and body["source"] == "judge" and body["score"] in (0.0, 1.0)
    assert (
        judge.feedback(item, RequestResult("t", False, 1.0, 1.0, status=529, error_type="overloaded_error"))
        is None
    )
    assert Judge(world, by_region, share=0.0, seed=0).feedback(item, answered(OPUS)) is None


def _sse(*events: tuple[str, dict]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


STREAM = _sse(
    ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 900, "cache_read_input_tokens": 100, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 64}}),
    ("message_stop", {"type": "message_stop"}),
)  # fmt: skip
HEADERS = {"request-id": "req_abc", "x-switchyard-sku": HAIKU, "x-switchyard-attempts": "2"}


def _send(sim, handler) -> RequestResult:
    async def send() -> RequestResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await send_request(client, "http://gateway", PreparedRequest(sim, b"{}", "k"))

    return asyncio.run(send())


@pytest.mark.parametrize(
    ("stream", "reply", "expected"),
    [
        (True, httpx.Response(200, headers=HEADERS, content=STREAM), dict(error_type=None, output_tokens=64, stop_reason="max_tokens")),
        (True, httpx.Response(200, headers=HEADERS, content=STREAM[: STREAM.index(b"event: message_delta")]), dict(error_type="incomplete_stream")),
        (True, httpx.Response(200, headers=HEADERS, content=STREAM[: STREAM.index(b"event: message_delta")] + _sse(("error", {"type": "error", "error": {"type": "api_error"}}))), dict(error_type="api_error")),
        (False, httpx.Response(200, headers=HEADERS, json={"usage": {"input_tokens": 900, "cache_read_input_tokens": 100, "output_tokens": 7}, "stop_reason": "end_turn"}), dict(error_type=None, output_tokens=7, ttft_ms=None)),
        (False, httpx.Response(529, headers={"request-id": "req_abc"}, json={"type": "error", "error": {"type": "overloaded_error"}}), dict(error_type="overloaded_error", sku=None)),
    ],
)  # fmt: skip
def test_send_request_reads_headers_usage_and_errors(sim, stream, reply, expected) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/messages" and request.headers["x-api-key"] == "k"
        return reply

    result = _send(dataclasses.replace(sim, stream=stream), handler)
    assert result.request_id == "req_abc"
    if expected.get("error_type") is None:
        assert (result.sku, result.attempts, result.input_tokens, result.cached_tokens) == (
            HAIKU,
            2,
            900,
            100,
        )
        assert result.answered
        assert (result.ttft_ms is not None) == stream
    for name, value in expected.items():
        assert getattr(result, name) == value


def test_send_request_names_transport_failures(sim) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    result = _send(sim, refuse)
    assert (result.status, result.error_type, result.answered) == (None, "connection_error", False)


@pytest.mark.parametrize("missing", ["keys", "bootstrap"])
def test_the_command_explains_what_is_missing(tmp_path, missing: str) -> None:
    bootstrap = tmp_path / "bootstrap"
    if missing == "keys":
        bootstrap.mkdir()
        (bootstrap / "_manifest.json").write_text(json.dumps({"seed": 5, "n_tenants": 20}))
    args = [
        "demo",
        "--url",
        "http://127.0.0.1:9",
        "--keys",
        str(tmp_path / "keys.json"),
        "--bootstrap",
        str(bootstrap),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert ("`make serve` writes it" if missing == "keys" else "make bootstrap") in result.output
