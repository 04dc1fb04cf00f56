"""What a training run shows people: the printed summary and the cost–quality plot, on hand-made tables."""

import polars as pl

from eval.matched_cost import matched_cost_metrics, matched_cost_table
from training.gate import GateVerdict
from training.mlflow_log import flat_table, write_plots
from training.pipeline import TrainResult, format_summary

SUMMARY_KEYS = (
    "quality.auc",
    "quality.log_loss",
    "quality.base_rate_log_loss",
    "quality.ece",
    "ttft_p50_ms.pinball",
    "ttft_p90_ms.pinball",
    "ttft_p50_ms.coverage",
    "ttft_p90_ms.coverage",
    "e2e_p50_ms.pinball",
    "e2e_p50_ms.coverage",
    "output_tokens.mae",
    "output_tokens.mean_actual",
    "policy.cost_multiplier",
    "policy.value",
    "policy.standard_error",
    "policy.cost_per_request_usd",
    "logged_policy.value",
    "logged_policy.cost_per_request_usd",
)


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
    metrics = dict.fromkeys(SUMMARY_KEYS, 0.5) | matched_cost_metrics(tables["matched_cost"])
    result = TrainResult(
        run_id="r",
        router_version="lgbm-x",
        model_sha256="0" * 64,
        version="1",
        duplicate_of=None,
        champion_before=None,
        verdict=GateVerdict(True, "champion", "logging policy", ("ok",), ()),
        metrics=metrics,
        baselines=tables["baselines"],
        frontier=tables["frontier"],
        matched_cost=tables["matched_cost"],
    )
    text = format_summary(result)
    # cheapest ($0.0018) now lies within the frontier (λ=64 costs $0.0017): both it and rules are beaten.
    assert (
        "matched cost: learned beats 3 of 4 baselines on quality at equal or lower cost "
        "(2 at equal cost mixing two λ, 3 with one λ at no more cost); 2 outside" in text
    )
    assert "2 outside the learned frontier's cost range" in text
    assert "λ=64 0.440@$0.0017" in text and "λ=0 0.730@$0.0095" in text
    assert text.count("out of range") == 2 and "λ=64 0.440 @ $0.0017 (+0.006): beats" in text


def test_the_frontier_plot_and_csv_include_the_matched_cost_table(tmp_path):
    tables = simulated_tables()
    written = write_plots(tmp_path, tables, {})
    assert [path.name for path in written] == ["cost_quality_frontier.png"]
    assert written[0].stat().st_size > 10_000
    flat_table(tables["matched_cost"]).write_csv(tmp_path / "matched_cost.csv")
    again = pl.read_csv(tmp_path / "matched_cost.csv")
    assert again["verdict"].to_list() == ["out of range", "beats", "out of range", "beats"]
