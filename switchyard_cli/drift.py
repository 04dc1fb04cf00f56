"""`switchyard drift` (`make drift-report`): drift and training–serving skew of the served traffic.

Exit status, for alerting: 0 ok, 1 warning, 2 critical, 3 the check could not run (no logs,
no reference). ``--clear-safe-mode`` and ``--resolve`` are the operator's two overrides
(docs/runbooks/drift.md).
"""

from __future__ import annotations

import getpass
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

CANNOT_RUN = 3
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``2d``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r}: expected a duration like 30m, 1h or 1d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def _parse_end(text: str | None) -> datetime | None:
    if text is None:
        return None
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _operator_action(state_dir: Path, clear: bool, resolve: str | None, reason: str | None) -> None:
    from features.drift_verdict import OperatorNote, clear_safe_mode, resolve_verdict

    if not reason:
        typer.echo("error: say why with --reason", err=True)
        raise typer.Exit(CANNOT_RUN)
    note = OperatorNote(datetime.now(UTC), getpass.getuser(), reason)
    if clear:
        cleared = clear_safe_mode(state_dir, note)
        if cleared is None:
            typer.echo(f"no verdict under {state_dir}: safe mode is not on")
        else:
            typer.echo(
                f"safe mode cleared on {cleared.verdict_id} ({cleared.status}); a later verdict decides again"
            )
    if resolve is not None:
        try:
            resolved = resolve_verdict(state_dir, resolve, note)
        except FileNotFoundError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(CANNOT_RUN) from None
        typer.echo(f"{resolved.verdict_id} resolved: training no longer refuses its window")


def drift_command(
    window: Annotated[str, typer.Option(help="Length of the served window checked: 30m, 1h, 1d.")] = "1h",
    end: Annotated[
        str | None, typer.Option(help="End of the window (ISO time, UTC); default: the latest decision.")
    ] = None,
    reference: Annotated[
        str,
        typer.Option(
            help="What normal is: an MLflow alias (champion), a run id, or a date range of the logs "
            "(2026-11-01..2026-11-05)."
        ),
    ] = "champion",
    logs: Annotated[Path, typer.Option(help="The decision log the gateway writes.")] = Path(
        "data/gateway-logs"
    ),
    mlruns: Annotated[Path, typer.Option(help="MLflow folder with the champion's run.")] = Path("mlruns"),
    feature_repo: Annotated[
        Path, typer.Option(help="Applied Feast repo for the offline recomputation of store features.")
    ] = Path("feature_repo"),
    out: Annotated[Path, typer.Option(help="Folder for drift-<time>.html and .json.")] = Path("reports"),
    state_dir: Annotated[
        Path, typer.Option(help="Where the verdict is published for serving and training.")
    ] = Path(".switchyard/drift"),
    skew_sample: Annotated[int, typer.Option(min=1, help="Served requests recomputed offline.")] = 2000,
    simulated_replay: Annotated[
        bool,
        typer.Option(help="Simulated (bootstrap) logs: recompute request features from regenerated text."),
    ] = True,
    publish: Annotated[bool, typer.Option(help="Publish the verdict (--no-publish: report only).")] = True,
    html: Annotated[bool, typer.Option(help="Write the HTML report (Evidently).")] = True,
    clear_safe_mode: Annotated[
        bool, typer.Option("--clear-safe-mode", help="Operator: turn safe mode off for the latest verdict.")
    ] = False,
    resolve: Annotated[
        str | None, typer.Option(help="Operator: a verdict id whose window training may use again.")
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="Why (required with --clear-safe-mode / --resolve).")
    ] = None,
) -> None:
    """Check the served traffic for feature drift, training–serving skew and outcome drift.

    Writes reports/drift-<time>.html (Evidently + the verdict), a JSON summary and the verdict
    file the gateway's safe mode reads; exits 0 ok, 1 warning, 2 critical (3: could not run).
    """
    if clear_safe_mode or resolve is not None:
        _operator_action(state_dir, clear_safe_mode, resolve, reason)
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one screen of output
    from eval.drift import DriftConfig, run_drift
    from eval.drift_report import text_summary
    from features.drift_verdict import EXIT_CODES

    config = DriftConfig(
        logs=logs,
        mlruns=mlruns,
        reference=reference,
        window=parse_duration(window),
        end=_parse_end(end),
        out=out,
        state_dir=state_dir if publish else None,
        feature_repo=feature_repo,
        skew_sample=skew_sample,
        simulated_replay=simulated_replay,
        render=html,
    )
    if not (logs / "decisions").is_dir():
        typer.echo(
            f"error: no decision log under {logs} (the gateway writes it: SWITCHYARD_GATEWAY_LOG_DIR)",
            err=True,
        )
        raise typer.Exit(CANNOT_RUN)
    try:
        run = run_drift(config, progress=typer.echo)
    except (LookupError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(CANNOT_RUN) from None
    typer.echo(text_summary(run))
    raise typer.Exit(EXIT_CODES[run.verdict.status])
