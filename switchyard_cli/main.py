"""The `switchyard` command line: one entry point, one sub-command per job."""

import typer

from switchyard_cli.bootstrap import bootstrap_command
from switchyard_cli.capacity import capacity_app
from switchyard_cli.demo import demo_command
from switchyard_cli.drift import drift_command
from switchyard_cli.eval_app import eval_app
from switchyard_cli.serve import serve_command
from switchyard_cli.train import feature_tables_command, train_command
from switchyard_cli.workers import workers_app

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Switchyard: a learned router for LLM inference."
)
app.add_typer(workers_app, name="workers")
app.add_typer(eval_app, name="eval")
app.add_typer(capacity_app, name="capacity")
app.command("bootstrap")(bootstrap_command)
app.command("serve")(serve_command)
app.command("train")(train_command)
app.command("feature-tables")(feature_tables_command)
app.command("demo")(demo_command)
app.command("drift")(drift_command)
