"""A request that admission sheds never runs the task-type classifier or the prompt embedding.

The gateway is built by the composition root (``serving.app.build_runtime``) in front of
simulated workers; the free tenant (18 requests a minute, 2 concurrent) is sent more requests
than its quota. Counting wrappers around the real functions (nothing returns a configured value)
count the calls: the gateway's ``routing_facts`` and, beneath it, the classifier and the
embedding that ``features.request`` calls. An admitted request's decision record carries exactly
the request vector ``facts_from_request`` gives for the same payload.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gateway_harness import FREE_KEY, US_KEY, app_settings, running_fleet

import features.messages_request
import features.request
from features.records import DecisionRecord
from features.request import facts_from_request, request_features
from serving.app import build_runtime, close_runtime
from serving.settings import AdmissionSettings

PAYLOAD = {
    "model": "auto",
    "max_tokens": 64,
    "system": "You review code for a payments team.",
    "messages": [
        {"role": "user", "content": "Why does this fail?\n```python\ndef pay(x):\n    return x / 0\n```"},
        {"role": "assistant", "content": "It divides by zero."},
        {"role": "user", "content": "Rewrite it to return None instead. [[sim out=20]]"},
    ],
    "tools": [{"name": "run_tests", "input_schema": {"type": "object"}}],
}
BURST = 30  # above the free tenant's 18-request bucket


def counting(calls: Counter, name: str, function):
    def counted(*args, **kwargs):
        calls[name] += 1
        return function(*args, **kwargs)

    return counted


async def burst(folder: Path, calls: Counter) -> tuple[list[int], list[DecisionRecord]]:
    with running_fleet(folder) as fleet:
        runtime = await build_runtime(app_settings(folder, fleet))
        gateway = runtime.gateway
        gateway.routing_facts = counting(calls, "routing_facts", gateway.routing_facts)
        records: list[DecisionRecord] = []
        log_record = gateway.submit

        def submit(record: object) -> None:
            if isinstance(record, DecisionRecord):
                records.append(record)
            log_record(record)

        gateway.submit = submit
        try:
            body = json.dumps(PAYLOAD).encode()
            statuses = []
            for _ in range(BURST):
                reply = await gateway.messages(body, {"x-api-key": FREE_KEY})
                statuses.append(reply.status)
            await asyncio.sleep(0.05)  # a completed request's books close just after its reply
        finally:
            await close_runtime(runtime)
    return statuses, records


def test_shed_requests_skip_the_routing_facts_and_admitted_ones_keep_their_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter = Counter()
    for name in ("predict_task_type", "embed_prompt"):
        monkeypatch.setattr(features.request, name, counting(calls, name, getattr(features.request, name)))

    statuses, records = asyncio.run(burst(tmp_path, calls))

    admitted = statuses.count(200)
    shed = sum(status in (429, 529) for status in statuses)
    assert admitted + shed == BURST, statuses
    assert admitted >= 1 and shed >= 1, statuses
    assert calls == {"routing_facts": admitted, "predict_task_type": admitted, "embed_prompt": admitted}

    assert len(records) == admitted
    expected = request_features(facts_from_request(PAYLOAD), tenant_tier="free", surface=records[0].surface)
    for record in records:
        np.testing.assert_array_equal(np.asarray(record.request_features), np.asarray(expected))


def test_a_shed_tier_is_refused_right_after_authentication(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While free-tier traffic is shed, a free request is answered 529 before its body is even
    parsed (an invalid body gets the 529, not a 400) and before the screen facts are computed;
    once the load is gone the same request gets its 400."""
    calls: Counter = Counter()
    monkeypatch.setattr(
        "serving.gateway.parse_messages_body",
        counting(calls, "parse", features.messages_request.parse_messages_body),
    )

    async def run() -> tuple[object, object, float]:
        with running_fleet(tmp_path) as fleet:
            settings = replace(app_settings(tmp_path, fleet), admission=AdmissionSettings(max_in_flight=2))
            runtime = await build_runtime(settings)
            gateway = runtime.gateway
            try:
                internal = gateway.tenants.authenticate(US_KEY)
                tickets = [
                    await gateway.admission.admit(internal, 10) for _ in range(2)
                ]  # the replica is full
                shed = await gateway.messages(b"{not json", {"x-api-key": FREE_KEY})
                counted = gateway.metrics.shed.labels("overloaded_error", "free")._value.get()
                for ticket in tickets:
                    await ticket.release(0)
                refused = await gateway.messages(b"{not json", {"x-api-key": FREE_KEY})
            finally:
                await close_runtime(runtime)
        return shed, refused, counted

    shed, refused, counted = asyncio.run(run())
    assert counted == 1  # counted as shed, by the tenant's tier
    assert shed.status == 529 and json.loads(shed.body)["error"]["type"] == "overloaded_error"
    assert refused.status == 400 and json.loads(refused.body)["error"]["type"] == "invalid_request_error"
    assert calls["parse"] == 1  # only the request that was not shed
