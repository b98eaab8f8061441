"""`methtrader model train`: build features, train a classifier, record and register it in MLflow."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from methtrader.cli.backtest import parse_time
from methtrader.cli.db import TrackingUriOption
from methtrader.cli.errors import UserError, fail_on_user_error

app = typer.Typer(help="Models: train on bars and register them in MLflow.", no_args_is_help=True)


@app.command()
@fail_on_user_error
def train(
    data: Annotated[
        str, typer.Option("--data", "-d", help="Dataset name or OHLCV file (CSV/Parquet).")
    ] = "btcusdt-1h-2019-2020",
    model: Annotated[str, typer.Option("--model", "-m", help="logistic or gbm.")] = "logistic",
    features: Annotated[
        str | None, typer.Option(help="Comma-separated feature names (default: all).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Registered model name (default: methtrader-<model>).")
    ] = None,
    tracking_uri: TrackingUriOption = None,
    test_fraction: Annotated[float, typer.Option(help="Last share of the rows held out for testing.")] = 0.25,
    start: Annotated[str | None, typer.Option("--from", help="First bar time (ISO date, UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Stop before this time (ISO date, UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Train a next-bar direction classifier and register a new model version."""
    from methtrader.data import DataError, get_dataset, resolve_bars
    from methtrader.ml.features import FeatureError, parse_features
    from methtrader.ml.tracking import ModelError
    from methtrader.ml.train import MODELS, TrainConfig, train_model

    if model not in MODELS:
        raise UserError(f"--model {model!r} is not one of {', '.join(MODELS)}")
    try:
        names = parse_features(features)
    except FeatureError as exc:
        raise UserError(f"--features: {exc}") from None
    config = TrainConfig(
        data=data,
        model=model,
        features=names,
        name=name,
        tracking_uri=tracking_uri,
        test_fraction=test_fraction,
        start_ms=parse_time("from", start),
        end_ms=parse_time("to", end),
    )
    try:
        series, _ = resolve_bars(data)
        source_file = Path(str(get_dataset(data).resource)) if _is_dataset(data) else Path(data)
    except DataError as exc:
        raise UserError(str(exc)) from None
    console = Console(stderr=True)
    try:
        if as_json:
            result = train_model(config, series, data, source_file=source_file)
        else:
            with console.status("training") as status:
                result = train_model(
                    config, series, data, status=lambda m: status.update(m), source_file=source_file
                )
    except ModelError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
        return
    out = Console(soft_wrap=True)
    out.print(f"run id          {result.run_id}", highlight=False)
    out.print(f"model uri       {result.model_uri}", highlight=False)
    out.print(f"run model       {result.run_model_uri}", highlight=False)
    out.print(f"dataset         {data} sha256 {result.dataset_digest}", highlight=False)
    out.print(f"rows            train {result.rows['train']}, test {result.rows['test']}", highlight=False)
    for key, value in result.metrics.items():
        out.print(f"{key:<15} {value:.4f}", highlight=False)


def _is_dataset(name: str) -> bool:
    from methtrader.data import dataset_names

    return name in dataset_names()
