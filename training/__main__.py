"""`python -m training`: the nightly router training job (the same as `switchyard train`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.pipeline import TrainConfig, format_summary, run_training


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--logs", type=Path, default=Path("data/logs"))
    parser.add_argument("--feature-repo", type=Path, default=Path("feature_repo"))
    parser.add_argument("--mlruns", type=Path, default=Path("mlruns"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-days", type=int, default=1)
    parser.add_argument("--max-train-requests", type=int, default=300_000, help="0 = all")
    parser.add_argument("--max-eval-requests", type=int, default=80_000, help="0 = all")
    parser.add_argument("--no-refresh-features", action="store_true")
    args = parser.parse_args(argv)
    config = TrainConfig(
        logs=args.logs,
        feature_repo=args.feature_repo,
        mlruns=args.mlruns,
        seed=args.seed,
        eval_days=args.eval_days,
        max_train_requests=args.max_train_requests or None,
        max_eval_requests=args.max_eval_requests or None,
        refresh_features=not args.no_refresh_features,
    )
    print(format_summary(run_training(config)))


if __name__ == "__main__":
    main()
