"""The `switchyard` command line: one entry point, one sub-command per job."""

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Switchyard: a learned router for LLM inference.")
