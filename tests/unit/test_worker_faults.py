"""Fault configuration and seeded fault draws."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simulator.faults import FaultConfig, FaultKind, FaultUpdate, WorkerFaults, choose_fault


def test_one_draw_maps_onto_cumulative_rates() -> None:
    config = FaultConfig(error_rate=0.1, overload_rate=0.2, rate_limit_rate=0.3, hang_rate=0.1)
    assert choose_fault(config, 0.05) is FaultKind.ERROR
    assert choose_fault(config, 0.25) is FaultKind.OVERLOAD
    assert choose_fault(config, 0.5) is FaultKind.RATE_LIMIT
    assert choose_fault(config, 0.65) is FaultKind.HANG
    assert choose_fault(config, 0.75) is FaultKind.NONE


def test_rate_one_always_fires() -> None:
    faults = WorkerFaults(FaultConfig(overload_rate=1.0), seed=0)
    assert {faults.draw("m")[1] for _ in range(100)} == {FaultKind.OVERLOAD}


def test_rates_must_sum_to_at_most_one() -> None:
    with pytest.raises(ValidationError):
        FaultConfig(error_rate=0.6, overload_rate=0.6)
    with pytest.raises(ValidationError):
        FaultConfig(slow_token_factor=0)


def test_draws_are_reproducible_for_a_seed_and_roughly_at_rate() -> None:
    config = FaultConfig(error_rate=0.3)
    first = [WorkerFaults(config, seed=11).draw("m")[1] for _ in range(1)]
    runs = []
    for _ in range(2):
        faults = WorkerFaults(config, seed=11)
        runs.append([faults.draw("m")[1] for _ in range(2000)])
    assert runs[0] == runs[1]
    assert runs[0][:1] == first
    share = runs[0].count(FaultKind.ERROR) / 2000
    assert 0.25 < share < 0.35
    other = WorkerFaults(config, seed=12)
    assert [other.draw("m")[1] for _ in range(2000)] != runs[0]


def test_per_model_overrides_and_reset() -> None:
    faults = WorkerFaults(FaultConfig(), seed=0)
    faults.apply(FaultUpdate(model="a", error_rate=1.0))
    assert faults.draw("a")[1] is FaultKind.ERROR
    assert faults.draw("b")[1] is FaultKind.NONE
    faults.apply(FaultUpdate(crash_after_tokens=3))
    assert faults.config_for("b").crash_after_tokens == 3
    assert faults.config_for("a").crash_after_tokens is None
    faults.apply(FaultUpdate(reset=True))
    assert faults.snapshot() == {"default": FaultConfig().model_dump(), "models": {}}
