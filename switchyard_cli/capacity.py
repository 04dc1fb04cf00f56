"""`switchyard capacity`: size the service for the brief's scale from the measured stage costs.

``report`` reads ``bench/results/stage_costs.json`` (``bench/stage_costs.py``) and the SKU
catalog, runs the capacity model (``eval.capacity.model``) with the stated assumptions
(``eval.capacity.inputs``; a few can be overridden here) and prints the tables; with
``--write-docs`` it renders them into the marked sections of that markdown file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

capacity_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Capacity: API cores, Redis, feature store, GPUs, logs and cost per request at the brief's scale.",
)


@capacity_app.callback()
def capacity_callback() -> None:
    """Capacity: API cores, Redis, feature store, GPUs, logs and cost per request at the brief's scale."""


@capacity_app.command("report")
def report_command(
    stages: Annotated[Path, typer.Option(help="the stage-costs file of bench/stage_costs.py")] = Path(
        "bench/results/stage_costs.json"
    ),
    traffic: Annotated[float, typer.Option(help="multiply the brief's traffic by this")] = 1.0,
    cache_hit: Annotated[
        float | None, typer.Option(help="share of prompt tokens read from a prefix cache (default: 0.5)")
    ] = None,
    write_docs: Annotated[
        Path | None, typer.Option(help="render the tables into this markdown file's marked sections")
    ] = None,
) -> None:
    """Print the sizing tables (docs/design-review.md)."""
    from eval.benchmarks.results import docs_with_tables
    from eval.capacity.inputs import Assumptions, ScaleTargets
    from eval.capacity.model import sensitivity, size
    from eval.capacity.stage_file import load_stage_costs
    from eval.capacity.tables import render_sections
    from features.catalog import load_catalog

    if not stages.exists():
        raise typer.BadParameter(f"{stages} not found; run bench/stage_costs.py first", param_hint="--stages")
    catalog = load_catalog()
    costs = load_stage_costs(stages)
    assumptions = replace(Assumptions(), traffic_multiplier=traffic, gpu_hour_usd=catalog.gpu_hour_usd)
    if cache_hit is not None:
        assumptions = replace(assumptions, prompt_cache_hit_rate=cache_hit)
    targets = ScaleTargets()
    report = size(targets, assumptions, costs, catalog)
    sections = render_sections(report, sensitivity(targets, assumptions, costs, catalog), costs)
    for name, markdown in sections.items():
        typer.echo(f"## {name}\n\n{markdown}\n")
    if write_docs is not None:
        document = write_docs.read_text(encoding="utf-8") if write_docs.exists() else ""
        for name, markdown in sections.items():
            document = docs_with_tables(document, markdown, name)
        write_docs.write_text(document, encoding="utf-8")
        typer.echo(f"tables written into {write_docs}")
