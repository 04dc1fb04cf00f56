"""``switchyard eval``: the offline evaluation programs.

Each command reads data, logs or MLflow and writes a report; none trains the production router.
Each program lives in its own module and registers one command here.
"""

from __future__ import annotations

import typer

eval_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Offline evaluation: routers on real outcome data, policies in the simulated worlds.",
)

from switchyard_cli.eval_benchmark import benchmark_command  # noqa: E402

eval_app.command("benchmark")(benchmark_command)

from switchyard_cli.eval_simulated import simulated_command  # noqa: E402

eval_app.command("simulated")(simulated_command)

from switchyard_cli.eval_world import eval_world_command  # noqa: E402

eval_app.command("world")(eval_world_command)
