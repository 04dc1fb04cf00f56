"""`switchyard train` and `switchyard feature-tables` are wired and refuse to run without logs."""

from typer.testing import CliRunner

from switchyard_cli.main import app


def test_train_without_logs_says_how_to_get_them(tmp_path):
    result = CliRunner().invoke(app, ["train", "--logs", str(tmp_path / "none"), "--mlruns", str(tmp_path)])
    assert result.exit_code == 2
    assert "switchyard bootstrap" in result.output


def test_both_commands_are_registered():
    runner = CliRunner()
    for command in ("train", "feature-tables"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--logs" in result.output
