"""What ``switchyard eval simulated`` prints and logs: the tables, the frontier plot, the MLflow run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from eval.matched_cost import frontier_points
from eval.simulated_router import PROGRAM, SimulatedEvalConfig, SimulatedEvaluation
from offline.evaluation_runs import EvaluationRun, log_evaluation_run
from offline.frontier import efficient_hull

BASELINE_COLUMNS = (
    "policy",
    "quality",
    "cost_per_request_usd",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "slo_miss_share",
)


def format_simulated(evaluation: SimulatedEvaluation, run_id: str | None = None) -> str:
    """The baselines table, the learned λ sweep on one line, and the matched-cost table."""
    split, m = evaluation.split, evaluation.metrics
    lines = [
        f"router v{evaluation.registered_version} ({evaluation.router_version}) in the simulated world: "
        f"held out {', '.join(split.eval_dates)}, {evaluation.requests:,} requests, "
        f"λ paced to {evaluation.cost_multiplier:g}" + (f"  (MLflow run {run_id})" if run_id else "")
    ]
    with pl.Config(tbl_rows=20, tbl_cols=10, float_precision=4, tbl_hide_dataframe_shape=True):
        lines.append(str(evaluation.tables["baselines"].select(BASELINE_COLUMNS)))
    learned = evaluation.tables["frontier"].filter(pl.col("policy") == "learned").sort("cost_multiplier")
    points = "  ".join(
        f"λ={lam:g} {quality:.3f}@${cost:.4f}"
        for lam, quality, cost in learned.select("cost_multiplier", "quality", "cost_per_request_usd").rows()
    )
    lines.append(f"learned over λ (true quality @ cost/request)  {points}")
    table = evaluation.tables["matched_cost"]
    if table.height:
        n = table.height
        lines.append(
            f"matched cost: learned beats {m['matched.beaten_at_no_more_cost']:.0f} of {n} baselines on "
            f"quality at equal or lower cost ({m['matched.beaten']:.0f} at equal cost mixing two λ, "
            f"{m['matched.beaten_pure']:.0f} with one λ at no more cost); {m['matched.out_of_range']:.0f} "
            "outside the learned frontier's cost range"
        )
        lines.append(
            f"  {'baseline':<12} {'quality':>7} {'cost':>8}   {'learned at that cost':<22} {'verdict':<13} "
            "best single λ at no more cost"
        )
        for row in table.iter_rows(named=True):
            at_cost = (
                "-"
                if row["learned_quality"] is None
                else f"{row['learned_quality']:.3f} ({row['margin']:+.3f})"
            )
            pure = row["pure_verdict"]
            if row["pure_quality"] is not None:
                pure = (
                    f"λ={row['pure_cost_multiplier']:g} {row['pure_quality']:.3f} @ "
                    f"${row['pure_cost_usd']:.4f} ({row['pure_margin']:+.3f}): {pure}"
                )
            cost = f"${row['baseline_cost_usd']:.4f}"
            lines.append(
                f"  {row['baseline']:<12} {row['baseline_quality']:>7.3f} {cost:>8}   "
                f"{at_cost:<22} {row['verdict']:<13} {pure}"
            )
    return "\n".join(lines)


def evaluation_run(
    config: SimulatedEvalConfig,
    evaluation: SimulatedEvaluation,
    *,
    program: str = PROGRAM,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> EvaluationRun:
    """The evaluation as a run of ``program``: the config, the held-out dates and request count, the
    router's versions, the tables and the frontier plot, plus ``params`` and ``tags``."""
    return EvaluationRun(
        program=program,
        run_name=f"v{evaluation.registered_version} {evaluation.router_version}",
        params=config.as_params()
        | {"eval_dates": ",".join(evaluation.split.eval_dates), "requests": str(evaluation.requests)}
        | dict(params or {}),
        metrics=evaluation.metrics,
        tags={
            "router_version": evaluation.router_version,
            "registered_version": evaluation.registered_version,
            "evaluated": config.version,
            **(tags or {}),
        },
        tables=evaluation.tables,
        figures={"cost_quality_frontier": frontier_figure(evaluation.tables)},
    )


def log_simulated_run(config: SimulatedEvalConfig, evaluation: SimulatedEvaluation) -> str:
    """The evaluation as a run of the ``switchyard-eval-simulated`` experiment; returns its id."""
    return log_evaluation_run(config.mlruns, evaluation_run(config, evaluation))


def frontier_figure(tables: Mapping[str, pl.DataFrame]) -> Any:
    """λ sweeps, the learned hull (mixtures), baselines as labelled points, and each baseline's match
    (a matplotlib ``Figure``; Agg, no pyplot state)."""
    from matplotlib.figure import Figure

    frontier = tables["frontier"]
    figure = Figure(figsize=(8, 5.5))
    axes = figure.subplots()
    for policy in frontier["policy"].unique(maintain_order=True).to_list():
        points = frontier.filter(pl.col("policy") == policy).sort("cost_multiplier")
        axes.plot(points["cost_per_request_usd"], points["quality"], marker="o", label=f"{policy} (λ sweep)")
        if policy == "learned":
            _label_lambdas(axes, frontier, points)
    hull = efficient_hull(frontier_points(frontier))
    if len(hull) > 1:  # a straight segment is a random mix of its two ends, so the cost axis stays linear
        axes.plot(
            [p.cost_usd for p in hull],
            [p.quality for p in hull],
            linestyle="--",
            color="grey",
            label="learned: mixtures of two λ (upper hull)",
        )
    if "baselines" in tables:
        for row in tables["baselines"].iter_rows(named=True):
            if row["policy"] == "learned":
                continue  # the paced λ, already on the sweep
            marker = "s" if row["uses_truth"] else "x"
            axes.scatter(row["cost_per_request_usd"], row["quality"], marker=marker, color="black", zorder=3)
            axes.annotate(
                row["policy"],
                (row["cost_per_request_usd"], row["quality"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
    if "matched_cost" in tables:
        matched = tables["matched_cost"].filter(pl.col("learned_quality").is_not_null())
        for row in matched.iter_rows(named=True):
            cost = row["baseline_cost_usd"]
            axes.plot(
                [cost, cost],
                [row["baseline_quality"], row["learned_quality"]],
                linestyle=":",
                color="green" if row["margin"] > 0 else "red",
            )
        if matched.height:
            axes.scatter(
                matched["baseline_cost_usd"],
                matched["learned_quality"],
                marker="*",
                s=80,
                color=["green" if margin > 0 else "red" for margin in matched["margin"]],
                zorder=3,
                label="learned at the baseline's cost (green: beats, red: does not)",
            )
    axes.set(
        xlabel="serving cost per request (USD)",
        ylabel="true quality",
        title="Cost–quality frontier (simulated world)",
    )
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def _label_lambdas(axes: Any, frontier: pl.DataFrame, points: pl.DataFrame) -> None:
    """λ next to each point; runs of points that nearly coincide get one label ("λ=8–64")."""
    span_cost = float(frontier["cost_per_request_usd"].max() - frontier["cost_per_request_usd"].min()) or 1.0
    span_quality = float(frontier["quality"].max() - frontier["quality"].min()) or 1.0
    groups: list[list[tuple[float, float, float]]] = []
    for lam, cost, quality in points.select("cost_multiplier", "cost_per_request_usd", "quality").rows():
        last = groups[-1][0] if groups else None
        if last and abs(cost - last[1]) < 0.02 * span_cost and abs(quality - last[2]) < 0.02 * span_quality:
            groups[-1].append((lam, cost, quality))
        else:
            groups.append([(lam, cost, quality)])
    for group in groups:
        lams = f"{group[0][0]:g}" if len(group) == 1 else f"{group[0][0]:g}–{group[-1][0]:g}"
        axes.annotate(f"λ={lams}", group[0][1:], fontsize=6, xytext=(3, -8), textcoords="offset points")
