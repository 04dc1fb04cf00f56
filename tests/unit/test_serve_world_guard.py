"""``switchyard serve --all`` never serves one world with the logs, champion and features of another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from switchyard_cli.serve import check_world, logged_world


def _bootstrap(logs: Path, manifest: dict[str, object]) -> None:
    logs.mkdir(parents=True)
    (logs / "_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (logs / "_SUCCESS").touch()


def test_the_logged_world_is_read_from_the_manifest(tmp_path: Path) -> None:
    assert logged_world(tmp_path / "none") is None
    _bootstrap(tmp_path / "real", {"world": "real-outcomes"})
    assert logged_world(tmp_path / "real") == "real-outcomes"
    _bootstrap(tmp_path / "old", {"seed": 0})  # a manifest from before worlds existed
    assert logged_world(tmp_path / "old") == "invented"


def test_an_unfinished_bootstrap_has_no_world_yet(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "_manifest.json").write_text(json.dumps({"world": "real-outcomes"}), encoding="utf-8")
    assert logged_world(logs) is None
    check_world(logs, tmp_path / "mlruns", tmp_path / "repo", "invented")


def test_serving_another_world_than_the_logs_is_refused(tmp_path: Path, capsys) -> None:
    logs = tmp_path / "logs"
    _bootstrap(logs, {"world": "invented"})
    check_world(logs, tmp_path / "mlruns", tmp_path / "repo", "invented")
    with pytest.raises(typer.Exit) as refused:
        check_world(logs, tmp_path / "mlruns", tmp_path / "repo", "real-outcomes")
    assert refused.value.exit_code == 2
    assert "'invented' world" in capsys.readouterr().err
