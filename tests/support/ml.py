"""A small model trained for tests: a few thousand hourly bars, MLflow in a temp directory."""

import json
from pathlib import Path

from typer.testing import CliRunner

from methtrader.cli.main import app

TRAIN_ARGS = ("--data", "btcusdt-1h-2019-2020", "--to", "2019-04-01")


def tracking_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def train(uri: str, *args: str) -> dict:
    """`methtrader model train ... --json` through the CLI; the parsed result."""
    result = CliRunner().invoke(app, ["model", "train", *TRAIN_ARGS, "--tracking-uri", uri, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
