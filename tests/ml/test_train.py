"""`methtrader model train`: a time-ordered split, metrics, lineage tags and a registered version
in a private MLflow (sqlite in a temp dir); unreachable MLflow and failures register nothing."""

import json
import socket

import numpy as np
import pytest
from typer.testing import CliRunner

from methtrader.cli.main import app
from methtrader.data import resolve_bars
from methtrader.ml.features import DEFAULT_FEATURES
from methtrader.ml.tracking import load_model
from methtrader.ml.train import bars_digest, split
from methtrader.ops.build import build_info
from support.ml import TRAIN_ARGS, tracking_uri, train

runner = CliRunner()


@pytest.fixture(scope="module")
def mlflow_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def logistic(mlflow_dir):
    return train(tracking_uri(mlflow_dir))


def client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_split_keeps_time_order():
    assert split(100, 0.25) == 75 and split(3, 0.1) == 2
    with pytest.raises(Exception, match="between 0 and 1"):
        split(10, 1.0)


def test_train_logs_params_metrics_lineage_and_registers(logistic, mlflow_dir):
    uri = tracking_uri(mlflow_dir)
    assert logistic["model_uri"] == "models:/methtrader-logistic/1"
    assert logistic["run_model_uri"] == f"runs:/{logistic['run_id']}/model"
    metrics = logistic["metrics"]
    assert 0.4 < metrics["accuracy"] < 0.7 and 0.5 < metrics["log_loss"] < 1.0 and 0 < metrics["auc"] < 1
    assert logistic["features"] == list(DEFAULT_FEATURES)

    run = client(uri).get_run(logistic["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "logistic" and run.data.params["features"] == ",".join(
        DEFAULT_FEATURES
    )
    p = run.data.params
    assert int(p["train_last_ts"]) < int(p["test_first_ts"])  # test rows all come after the training rows
    assert int(p["rows_train"]) + int(p["rows_test"]) == logistic["rows"]["train"] + logistic["rows"]["test"]
    assert set(run.data.metrics) >= {"accuracy", "log_loss", "auc"}
    build = build_info()
    assert run.data.tags["git_commit"] == build.commit and run.data.tags["git_dirty"] in ("true", "false")

    series, _ = resolve_bars("btcusdt-1h-2019-2020")
    from methtrader.cli.backtest import parse_time

    digest = bars_digest(series.between(None, parse_time("to", "2019-04-01")))
    assert logistic["dataset_digest"] == digest == run.data.tags["dataset_sha256"]
    dataset = run.inputs.dataset_inputs[0].dataset
    assert dataset.digest == digest[:32] and dataset.name == "btcusdt-1h-2019-2020"
    assert run.data.tags["data_file_sha256"] and len(run.data.tags["data_file_sha256"]) == 64
    assert run.info.artifact_uri.startswith((mlflow_dir / "mlruns").as_uri())

    version = client(uri).get_model_version("methtrader-logistic", "1")
    assert version.run_id == logistic["run_id"]
    loaded = load_model("models:/methtrader-logistic/1", uri)
    assert (
        loaded.run_id == logistic["run_id"] and loaded.version == "1" and loaded.features == DEFAULT_FEATURES
    )
    x = np.zeros((2, len(DEFAULT_FEATURES)))
    import pandas as pd

    proba = loaded.predict_up(pd.DataFrame(x, columns=list(DEFAULT_FEATURES)))
    assert ((proba > 0) & (proba < 1)).all()
    assert load_model(logistic["run_model_uri"], uri).run_id == logistic["run_id"]


def test_gbm_with_a_feature_subset_and_a_second_version(logistic, mlflow_dir):
    uri = tracking_uri(mlflow_dir)
    gbm = train(uri, "--model", "gbm", "--features", "ret_1,ret_5,rsi_14", "--name", "methtrader-logistic")
    assert gbm["model_uri"] == "models:/methtrader-logistic/2" and gbm["features"] == [
        "ret_1",
        "ret_5",
        "rsi_14",
    ]
    loaded = load_model(gbm["model_uri"], uri)
    assert type(loaded.model).__name__ == "HistGradientBoostingClassifier"


def test_tracking_uri_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("METHTRADER_MLFLOW_TRACKING_URI", tracking_uri(tmp_path))
    result = runner.invoke(app, ["model", "train", *TRAIN_ARGS, "--features", "ret_1,ret_5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tracking_uri"] == tracking_uri(tmp_path)
    assert (tmp_path / "mlflow.db").is_file()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_mlflow_is_one_line_exit_2():
    uri = f"http://127.0.0.1:{closed_port()}"
    result = runner.invoke(app, ["model", "train", *TRAIN_ARGS, "--tracking-uri", uri])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: MLflow tracking server {uri} is unreachable: ConnectError"


def test_failure_while_logging_registers_nothing(mlflow_dir, logistic, monkeypatch):
    import mlflow.sklearn

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mlflow.sklearn, "log_model", broken)
    uri = tracking_uri(mlflow_dir)
    before = client(uri).search_model_versions("name='methtrader-failing'")
    result = runner.invoke(
        app, ["model", "train", *TRAIN_ARGS, "--tracking-uri", uri, "--name", "methtrader-failing"]
    )
    assert result.exit_code == 2
    assert "failed while recording the model: disk full" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert client(uri).search_model_versions("name='methtrader-failing'") == before == []
    runs = client(uri).search_runs(
        [client(uri).get_experiment_by_name("methtrader").experiment_id], order_by=["start_time DESC"]
    )
    assert runs[0].info.status == "FAILED"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "svm"], "--model 'svm' is not one of logistic, gbm"),
        (["--features", "ret_1,nope"], "--features: unknown feature 'nope'"),
        (["--data", "nope"], "unknown dataset or file 'nope'"),
        (["--test-fraction", "1.5"], "test fraction must be between 0 and 1, got 1.5"),
        (["--from", "2019-03-31", "--to", "2019-04-01"], "usable rows after the features' warm-up"),
    ],
)
def test_bad_input(args, message, tmp_path):
    result = runner.invoke(app, ["model", "train", "--tracking-uri", tracking_uri(tmp_path), *args])
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_human_output(mlflow_dir, logistic):
    uri = tracking_uri(mlflow_dir)
    result = runner.invoke(
        app, ["model", "train", *TRAIN_ARGS, "--tracking-uri", uri, "--features", "ret_1", "--name", "human"]
    )
    assert result.exit_code == 0, result.output
    assert "model uri       models:/human/1" in result.stdout and "accuracy" in result.stdout


def test_mlflow_leaves_our_logging_alone(logistic):
    import logging

    for name in ("sqlalchemy.engine", "alembic", "mlflow"):
        logger = logging.getLogger(name)
        handlers = [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]
        assert logger.propagate and not handlers, name
