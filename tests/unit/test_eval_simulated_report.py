"""What ``switchyard eval simulated`` shows people: the printed tables and the cost–quality plot, on
hand-made tables."""

from datetime import UTC, datetime

import polars as pl

from eval.matched_cost import matched_cost_metrics, matched_cost_table
from eval.simulated_report import format_simulated, frontier_figure
from eval.simulated_router import SimulatedEvaluation
from offline.evaluation_runs import flat_table
from offline.logged import TimeSplit


def simulated_tables() -> dict[str, pl.DataFrame]:
    learned = [(0.0, 0.730, 0.0095), (0.1, 0.716, 0.0080), (1.0, 0.537, 0.0026), (64.0, 0.440, 0.0017)]
    frontier = pl.DataFrame(
        [("learned", lam, q, c) for lam, q, c in learned] + [("oracle", 0.0, 0.794, 0.0190)],
        schema=["policy", "cost_multiplier", "quality", "cost_per_request_usd"],
        orient="row",
    )
    baselines = pl.DataFrame(
        [
            ("random", False, 0.635, 0.0185),
            ("cheapest", False, 0.434, 0.0018),
            ("always_best", False, 0.794, 0.0190),
            ("rules", False, 0.667, 0.0093),
            ("learned", False, 0.730, 0.0095),
            ("oracle", True, 0.794, 0.0190),
        ],
        schema=["policy", "uses_truth", "quality", "cost_per_request_usd"],
        orient="row",
    ).with_columns(ttft_p50_ms=pl.lit(400.0), ttft_p99_ms=pl.lit(3000.0), slo_miss_share=pl.lit(0.1))
    return {
        "frontier": frontier,
        "baselines": baselines,
        "matched_cost": matched_cost_table(frontier, baselines),
    }


def test_the_summary_prints_the_frontier_and_the_matched_cost_table():
    tables = simulated_tables()
    evaluation = SimulatedEvaluation(
        router_version="lgbm-x",
        registered_version="1",
        split=TimeSplit(datetime(2026, 11, 3, tzinfo=UTC), ("2026-11-01", "2026-11-02"), ("2026-11-03",)),
        requests=6000,
        cost_multiplier=0.0,
        metrics=matched_cost_metrics(tables["matched_cost"]),
        tables=tables,
    )
    text = format_simulated(evaluation, run_id="abc")
    # cheapest ($0.0018) now lies within the frontier (λ=64 costs $0.0017): both it and rules are beaten.
    assert (
        "matched cost: learned beats 3 of 4 baselines on quality at equal or lower cost "
        "(2 at equal cost mixing two λ, 3 with one λ at no more cost); 2 outside" in text
    )
    assert "2 outside the learned frontier's cost range" in text
    assert "λ=64 0.440@$0.0017" in text and "λ=0 0.730@$0.0095" in text
    assert text.count("out of range") == 2 and "λ=64 0.440 @ $0.0017 (+0.006): beats" in text
    assert (
        text.startswith("router v1 (lgbm-x) in the simulated world: held out 2026-11-03")
        and "run abc" in text
    )
    assert "always_best" in text and "slo_miss_share" in text  # the baselines table


def test_the_frontier_plot_and_csv_include_the_matched_cost_table(tmp_path):
    tables = simulated_tables()
    frontier_figure(tables).savefig(tmp_path / "cost_quality_frontier.png", dpi=110)
    assert (tmp_path / "cost_quality_frontier.png").stat().st_size > 10_000
    flat_table(tables["matched_cost"]).write_csv(tmp_path / "matched_cost.csv")
    again = pl.read_csv(tmp_path / "matched_cost.csv")
    assert again["verdict"].to_list() == ["out of range", "beats", "out of range", "beats"]
