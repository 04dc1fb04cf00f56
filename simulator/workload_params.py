"""The workload's request distributions (:class:`WorkloadParams`), calibrated to the seed (docs/simulator.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from features.schema import TASK_TYPES


def _per_task(**values: float) -> dict[str, float]:
    assert set(values) == set(TASK_TYPES), sorted(set(TASK_TYPES) ^ set(values))
    return values


@dataclass(frozen=True)
class WorkloadParams:
    """Request distributions; defaults calibrated to the seed (docs/simulator.md)."""

    requests_per_day: int = 143_000
    script_mix: dict[str, tuple[float, ...]] = field(  # per region, in PROMPT_SCRIPTS order
        default_factory=lambda: {
            "us": (0.93, 0.03, 0.02, 0.02),
            "eu": (0.85, 0.03, 0.08, 0.04),
            "apac": (0.60, 0.36, 0.02, 0.02),
        }
    )
    difficulty_beta: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "chat": (2, 5),
            "code": (3, 3),
            "summarization": (2, 4),
            "extraction": (2, 5),
            "reasoning": (4, 3),
            "creative": (2, 3),
            "math": (4, 3),
            "knowledge": (2, 4),
        }
    )
    first_turn_median: dict[str, float] = field(  # tokens above MIN_USER_TOKENS, non-document requests
        default_factory=lambda: _per_task(
            chat=150,
            code=400,
            summarization=500,
            extraction=400,
            reasoning=350,
            creative=120,
            math=100,
            knowledge=80,
        )
    )
    first_turn_sigma: float = 1.0
    document_share: dict[str, float] = field(  # share of first turns that carry a long document
        default_factory=lambda: _per_task(
            chat=0.04,
            code=0.25,
            summarization=0.6,
            extraction=0.45,
            reasoning=0.15,
            creative=0.04,
            math=0.04,
            knowledge=0.08,
        )
    )
    document_median: float = 6_500.0
    document_sigma: float = 1.3
    follow_up_median: float = 60.0  # tokens above MIN_USER_TOKENS
    follow_up_sigma: float = 1.0
    output_median: dict[str, float] = field(
        default_factory=lambda: _per_task(
            chat=220,
            code=500,
            summarization=280,
            extraction=180,
            reasoning=600,
            creative=450,
            math=450,
            knowledge=320,
        )
    )
    output_sigma: float = 0.7
    code_snippet_share: dict[str, float] = field(
        default_factory=lambda: _per_task(
            chat=0.02,
            code=0.7,
            summarization=0.02,
            extraction=0.1,
            reasoning=0.05,
            creative=0.02,
            math=0.02,
            knowledge=0.02,
        )
    )
    think_time_median_s: float = 60.0
    think_time_sigma: float = 1.2
    think_time_max_s: float = 1800.0
    reading_s_per_output_token: float = 0.02
    overflow_low_fraction: float = (
        0.3  # a first turn too long for every eligible SKU is redrawn in [0.3, 1] x room
    )
