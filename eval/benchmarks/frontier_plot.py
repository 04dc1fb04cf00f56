"""Frontier plots (matplotlib, Agg, PNG) drawn from a results document's curves.

Two-model sets: PGR against the share of strong-model calls, one line per router.
Many-model sets: each router's upper hull in (cost, quality), the single models as points.
"""

from __future__ import annotations

from pathlib import Path


def plot_evaluation(evaluation: dict, path: Path) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 5))
    axes = figure.subplots()
    if evaluation["kind"] == "two-model":
        for router in evaluation["routers"]:
            curve = router["curve"]
            axes.plot(
                curve["strong_share"],
                curve["pgr"],
                label=f"{router['router']} ({router['metrics']['apgr']['value']:.3f})",
            )
        axes.set(xlabel="share of strong-model calls", ylabel="PGR", xlim=(0, 1))
        axes.axhline(1.0, color="grey", linewidth=0.5)
    else:
        for router in evaluation["routers"]:
            curve = router["curve"]
            label = f"{router['router']} (AIQ {router['metrics']['aiq']['value']:.3f})"
            axes.plot(curve["hull_cost_usd"], curve["hull_quality"], marker=".", label=label)
        for model, single in evaluation["singles"].items():
            axes.scatter([single["cost_usd"]], [single["quality"]], color="black", s=12)
            axes.annotate(model, (single["cost_usd"], single["quality"]), fontsize=6)
        axes.set(xlabel="mean cost per prompt (USD)", ylabel="mean quality")
    axes.set_title(
        f"{evaluation['dataset']} — {evaluation['split']} split, {evaluation['n_prompts']} prompts"
    )
    axes.legend(fontsize=6, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def plot_all(document: dict, folder: Path) -> list[Path]:
    return [
        plot_evaluation(evaluation, folder / f"frontier_{evaluation['dataset']}_{evaluation['split']}.png")
        for evaluation in document["evaluations"]
    ]
