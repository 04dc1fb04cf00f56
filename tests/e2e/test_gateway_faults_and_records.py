"""Fallback, mid-stream failure, residency under failure, and exactly-once records.

One gateway in front of simulated workers; faults are injected through each worker's
``/admin/faults``. At the end the gateway shuts down (flushing its event log) and the logged
records are counted: every accepted request has exactly one decision and one outcome, and
every attempt the client could not see is there too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import httpx
import polars as pl
import pytest
from gateway_harness import EU_KEY, FREE_KEY, US_KEY, Fleet, app_settings, running_fleet, running_gateway

from features.prompt_embedding import embed_prompt
from features.record_store import scan_records
from features.records import AttemptRecord, DecisionRecord, OutcomeRecord
from features.schema import PROMPT_EMBEDDING_DIMS

PROMPT = [{"role": "user", "content": "Summarize routing in two lines. [[sim out=40]]"}]


def set_faults(fleet: Fleet, sku: str, region: str, **faults: object) -> None:
    for url in fleet.urls[(sku, region)]:
        response = httpx.post(f"{url}/admin/faults", json={"reset": True, **faults}, timeout=10)
        assert response.status_code == 200, response.text


def reset_faults(fleet: Fleet) -> None:
    for urls in fleet.urls.values():
        for url in urls:
            httpx.post(f"{url}/admin/faults", json={"reset": True}, timeout=10).raise_for_status()


class Ledger:
    """Request ids the client saw, by whether the gateway accepted them."""

    def __init__(self, stop_gateway: Callable[[], None]) -> None:
        self.accepted: list[str] = []
        self.rejected: list[str] = []
        self.stop_gateway = stop_gateway  # shut down (flushing the event log); idempotent


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Fleet, Path, Ledger]]:
    folder = tmp_path_factory.mktemp("faults")
    with running_fleet(folder) as fleet, contextlib.ExitStack() as gateway:
        url = gateway.enter_context(running_gateway(app_settings(folder, fleet)))
        yield url, fleet, folder, Ledger(gateway.close)


def test_failures_before_the_first_byte_are_invisible(world) -> None:
    url, fleet, _, ledger = world
    for sku in ("claude-opus-4-5", "claude-sonnet-4-5"):
        set_faults(fleet, sku, "us", overload_rate=1.0)
    try:
        client = anthropic.Anthropic(api_key=US_KEY, base_url=url, max_retries=0)
        attempts = []
        for index in range(12):
            stream = index % 2 == 1
            if stream:
                with client.messages.stream(model="auto", max_tokens=100, messages=PROMPT) as s:
                    final = s.get_final_message()
                    request_id = s.response.headers["request-id"]
                    attempts.append(int(s.response.headers["x-switchyard-attempts"]))
                    sku = s.response.headers["x-switchyard-sku"]
            else:
                raw = client.messages.with_raw_response.create(model="auto", max_tokens=100, messages=PROMPT)
                final, request_id = raw.parse(), raw.headers["request-id"]
                attempts.append(int(raw.headers["x-switchyard-attempts"]))
                sku = raw.headers["x-switchyard-sku"]
            ledger.accepted.append(request_id)
            assert final.usage.output_tokens == 40
            assert sku == "claude-haiku-4-5"  # the only SKU whose workers answer
        assert max(attempts) > 1  # some requests were first routed to a failing SKU
    finally:
        reset_faults(fleet)


def test_a_crash_mid_stream_ends_with_an_error_event(world) -> None:
    url, fleet, _, ledger = world
    for sku, region in (("claude-opus-4-5", "us"), ("claude-sonnet-4-5", "us"), ("claude-haiku-4-5", "us")):
        set_faults(fleet, sku, region, crash_after_tokens=5)
    try:
        body = {"model": "auto", "max_tokens": 100, "stream": True, "messages": PROMPT}
        with httpx.stream(
            "POST", f"{url}/v1/messages", json=body, headers={"x-api-key": US_KEY}, timeout=30
        ) as r:
            assert r.status_code == 200
            ledger.accepted.append(r.headers["request-id"])
            text = b"".join(r.iter_bytes()).decode()
        assert "event: content_block_delta" in text
        assert text.rstrip().splitlines()[-2] == "event: error"
        assert '"type":"api_error"' in text.rstrip().splitlines()[-1]
        # the SDK surfaces it as an error too
        client = anthropic.Anthropic(api_key=US_KEY, base_url=url, max_retries=0)
        with (
            pytest.raises(anthropic.APIStatusError),
            client.messages.stream(model="auto", max_tokens=100, messages=PROMPT) as s,
        ):
            ledger.accepted.append(s.response.headers["request-id"])
            s.get_final_message()
    finally:
        reset_faults(fleet)


def test_eu_tenant_gets_an_error_rather_than_a_us_deployment(world) -> None:
    url, fleet, _, ledger = world
    for sku in ("claude-sonnet-4-5", "claude-haiku-4-5"):
        set_faults(fleet, sku, "eu", error_rate=1.0)
    try:
        for _ in range(3):
            response = httpx.post(
                f"{url}/v1/messages",
                json={"model": "auto", "max_tokens": 50, "messages": PROMPT},
                headers={"x-api-key": EU_KEY},
                timeout=30,
            )
            assert response.status_code in (500, 529), response.text
            assert response.json()["type"] == "error"
            assert "x-switchyard-region" not in response.headers
            ledger.accepted.append(response.headers["request-id"])
        # the breakers are now open: the request is refused before admission, and says where
        response = httpx.post(
            f"{url}/v1/messages",
            json={"model": "auto", "max_tokens": 50, "messages": PROMPT},
            headers={"x-api-key": EU_KEY},
            timeout=30,
        )
        if response.status_code == 529 and "(eu)" in response.json()["error"]["message"]:
            ledger.rejected.append(response.headers["request-id"])
        else:
            ledger.accepted.append(response.headers["request-id"])
    finally:
        reset_faults(fleet)


def test_rejections_before_admission_leave_no_records(world) -> None:
    url, _, _, ledger = world
    with httpx.Client(base_url=url, timeout=30) as http:
        statuses = []
        for _ in range(6):  # the free tenant: 18 per minute, a 10 s burst = 3
            response = http.post(
                "/v1/messages",
                json={"model": "auto", "max_tokens": 20, "messages": PROMPT},
                headers={"x-api-key": FREE_KEY},
            )
            statuses.append(response.status_code)
            (ledger.accepted if response.status_code == 200 else ledger.rejected).append(
                response.headers["request-id"]
            )
        assert statuses.count(200) == 3 and statuses.count(429) == 3
        limited = http.post(
            "/v1/messages",
            json={"model": "auto", "max_tokens": 20, "messages": PROMPT},
            headers={"x-api-key": FREE_KEY},
        )
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        ledger.rejected.append(limited.headers["request-id"])
        bad = http.post(
            "/v1/messages", json={"model": "auto", "messages": PROMPT}, headers={"x-api-key": US_KEY}
        )
        ledger.rejected.append(bad.headers["request-id"])


def test_zz_every_accepted_request_has_exactly_one_decision_and_outcome(world) -> None:
    _, _, folder, ledger = world
    assert ledger.accepted
    ledger.stop_gateway()  # runs last in this module (pytest keeps file order)
    logs = folder / "logs"
    decisions = scan_records(logs, DecisionRecord).select("request_id", "chosen_sku", "propensity").collect()
    outcomes = scan_records(logs, OutcomeRecord).select("request_id", "status", "attempts").collect()
    attempts = scan_records(logs, AttemptRecord).select("request_id", "attempt", "status").collect()
    for table in (decisions, outcomes):
        counts = table.group_by("request_id").len()
        assert counts["len"].max() == 1  # never twice
        assert set(table["request_id"]) == set(ledger.accepted)  # every accepted one, nothing else
    assert not set(ledger.rejected) & set(decisions["request_id"])
    joined = outcomes.join(attempts.group_by("request_id").len(), on="request_id")
    assert (joined["attempts"] == joined["len"]).all()
    assert attempts.filter(pl.col("status") != "ok").height > 0
    assert ((decisions["propensity"] > 0) & (decisions["propensity"] <= 1)).all()
    # every request sent PROMPT: each decision records its prompt embedding as serving computed it
    served = scan_records(logs, DecisionRecord).select("request_features").collect()["request_features"]
    embedding = embed_prompt(PROMPT[0]["content"]).tolist()
    assert all(list(vector)[-PROMPT_EMBEDDING_DIMS:] == embedding for vector in served.to_list())
