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
from pathlib import Path

import numpy as np
import pytest
from gateway_harness import FREE_KEY, app_settings, running_fleet

import features.request
from features.records import DecisionRecord
from features.request import facts_from_request, request_features
from serving.app import build_runtime, close_runtime

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
