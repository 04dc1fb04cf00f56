"""Safe mode through the real gateway: a critical skew verdict on disk switches routing to the
static prior (headers, /readyz, /metrics, decision records), and clearing it switches back."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from gateway_harness import US_KEY, app_settings, running_fleet, running_gateway
from lightgbm import LGBMClassifier, LGBMRegressor

from features.drift_verdict import (
    FEATURE_DRIFT,
    OUTCOME_DRIFT,
    SKEW,
    CheckVerdict,
    DriftVerdict,
    OperatorNote,
    clear_safe_mode,
    publish_verdict,
)
from features.record_store import scan_records
from features.records import DecisionRecord
from features.schema import FEATURE_NAMES
from router_model.artifact import artifact_metadata
from serving.router_runtime import STATIC_PRIOR_VERSION
from serving.safe_mode import SafeModeSettings
from training.export import export_router

ROUTER_VERSION = "tiny-e2e-router"
BODY = {"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": "hi [[sim out=8]]"}]}
HEADERS = {"x-api-key": US_KEY, "anthropic-version": "2023-06-01"}


def tiny_router(path: Path) -> Path:
    """A real (if meaningless) LightGBM router exported to ONNX: the gateway serves it as its champion."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(400, len(FEATURE_NAMES))).astype(np.float32)
    common = {"n_estimators": 5, "num_leaves": 4, "verbose": -1, "random_state": 0}
    target = rows[:, 0]
    models = {
        "p_quality": LGBMClassifier(**common).fit(rows, (target > 0).astype(int)),
        "ttft_p50_ms": LGBMRegressor(**common).fit(rows, 300 + 10 * target),
        "ttft_p90_ms": LGBMRegressor(**common).fit(rows, 500 + 10 * target),
        "e2e_p50_ms": LGBMRegressor(**common).fit(rows, 2000 + 10 * target),
        "output_tokens": LGBMRegressor(**common).fit(rows, 200 + 10 * target),
    }
    path.write_bytes(export_router(models, rows.shape[1], artifact_metadata(ROUTER_VERSION)))
    return path


def skew_verdict(status: str) -> DriftVerdict:
    now = datetime.now(UTC)
    reasons = ("prompt_tokens: served differs from recomputed on 41% of requests",) if status != "ok" else ()
    return DriftVerdict(
        verdict_id=f"drift-e2e-{status}",
        generated_at=now,
        window_start=now - timedelta(hours=1),
        window_end=now,
        checks={
            SKEW: CheckVerdict(status, reasons),
            FEATURE_DRIFT: CheckVerdict("ok"),
            OUTCOME_DRIFT: CheckVerdict("ok"),
        },
    )


def wait_for_safe_mode(url: str, active: bool) -> dict:
    deadline = time.monotonic() + 10
    while True:
        detail = httpx.get(f"{url}/readyz", timeout=5).json()
        if detail["safe_mode"]["active"] is active or time.monotonic() > deadline:
            return detail
        time.sleep(0.05)


def route_version(url: str) -> tuple[str, str]:
    response = httpx.post(f"{url}/v1/messages", json=BODY, headers=HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["request-id"], response.headers["x-switchyard-router-version"]


def safe_mode_gauge(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("switchyard_safe_mode "):
            return float(line.split()[1])
    raise AssertionError("switchyard_safe_mode is not exported")


def test_critical_skew_switches_to_the_static_prior_and_back(tmp_path: Path) -> None:
    state_dir = tmp_path / "drift"
    with running_fleet(tmp_path) as fleet:
        settings = app_settings(tmp_path, fleet, router_model_file=tiny_router(tmp_path / "router.onnx"))
        settings = dataclasses.replace(
            settings, safe_mode=SafeModeSettings(verdict_file=state_dir / "verdict.json", poll_s=0.05)
        )
        with running_gateway(settings) as url:
            assert not httpx.get(f"{url}/readyz", timeout=5).json()["safe_mode"]["active"]
            normal = [route_version(url) for _ in range(3)]
            assert {version for _, version in normal} == {ROUTER_VERSION}
            assert safe_mode_gauge(url) == 0

            publish_verdict(state_dir, skew_verdict("critical"))
            detail = wait_for_safe_mode(url, True)
            assert detail["safe_mode"]["active"] and detail["ready"]  # still serving, with the prior
            assert detail["safe_mode"]["trigger"] == SKEW and "prompt_tokens" in detail["safe_mode"]["reason"]
            safe = [route_version(url) for _ in range(3)]
            assert {version for _, version in safe} == {STATIC_PRIOR_VERSION}
            assert safe_mode_gauge(url) == 1
            metrics = httpx.get(f"{url}/metrics", timeout=5).text
            assert 'switchyard_drift_check_status{check="skew"} 2.0' in metrics

            clear_safe_mode(state_dir, OperatorNote(datetime.now(UTC), "on-call", "fixed the token counter"))
            detail = wait_for_safe_mode(url, False)
            assert not detail["safe_mode"]["active"] and "cleared by on-call" in detail["safe_mode"]["reason"]
            after = [route_version(url) for _ in range(3)]
            assert {version for _, version in after} == {ROUTER_VERSION}
            assert safe_mode_gauge(url) == 0

    # the decision records say which router decided, so training and OPE can tell safe-mode traffic
    logged = scan_records(tmp_path / "logs", DecisionRecord).select("request_id", "router_version").collect()
    versions = dict(zip(logged["request_id"].to_list(), logged["router_version"].to_list(), strict=True))
    assert all(versions[request_id] == STATIC_PRIOR_VERSION for request_id, _ in safe)
    assert all(versions[request_id] == ROUTER_VERSION for request_id, _ in normal + after)


@pytest.mark.parametrize("contents", [b"{not json", b'{"version": 99}'])
def test_an_unreadable_verdict_keeps_the_current_router_and_is_counted(
    tmp_path: Path, contents: bytes
) -> None:
    state_dir = tmp_path / "drift"
    state_dir.mkdir()
    (state_dir / "verdict.json").write_bytes(contents)
    with running_fleet(tmp_path) as fleet:
        settings = app_settings(tmp_path, fleet, router_model_file=tiny_router(tmp_path / "router.onnx"))
        settings = dataclasses.replace(
            settings, safe_mode=SafeModeSettings(verdict_file=state_dir / "verdict.json", poll_s=0.05)
        )
        with running_gateway(settings) as url:
            detail = httpx.get(f"{url}/readyz", timeout=5).json()
            assert not detail["safe_mode"]["active"] and detail["safe_mode"]["read_errors"] >= 1
            assert route_version(url)[1] == ROUTER_VERSION
