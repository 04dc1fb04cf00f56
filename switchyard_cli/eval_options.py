"""What ``switchyard eval simulated`` and ``switchyard eval world`` share: the options that name the
registered router, the Feast repo and the held-out sample, and the checks on them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MlrunsOption = Annotated[Path, typer.Option(help="MLflow folder: mlflow.db and artifacts/.")]
VersionOption = Annotated[
    str, typer.Option(help="The registered router: an alias (champion, challenger) or a version number.")
]
FeatureRepoOption = Annotated[
    Path, typer.Option(help="The applied Feast repo (store features as of each decision).")
]
EvalDaysOption = Annotated[int, typer.Option(min=1, help="Latest logged days held out, as in training.")]
MaxRequestsOption = Annotated[
    int, typer.Option(min=0, help="Seeded sample of held-out requests; 0 = all of them.")
]
SeedOption = Annotated[int, typer.Option(help="Seed of the sample and of the simulated TTFT noise.")]


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` to stderr; the exit (code 2) for the caller to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def require_feature_repo(feature_repo: Path) -> None:
    """Exit with code 2 unless ``feature_repo`` is an applied Feast repo."""
    if not (feature_repo / "data" / "registry.db").is_file():
        raise fail(f"{feature_repo} is not an applied Feast repo (run `switchyard train` first)")
