"""A tiny but real MLflow model for audit tests and the pull benchmark: a logistic regression fitted on
200 rows, logged with params, metrics, git tags, a dataset input and the model artifact (skops) to a
SQLite tracking store in `folder`, and registered as a version of `name`."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MODEL_NAME = "audit-test-model"


@dataclass(frozen=True)
class MlflowRun:
    tracking_uri: str
    run_id: str
    name: str
    version: str
    experiment_id: str


def log_tiny_model(folder: Path, name: str = MODEL_NAME, commit: str = COMMIT) -> MlflowRun:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    import mlflow.data
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("audit-tests", artifact_location=(folder / "mlruns").as_uri())
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=["ret_1", "rsi_14", "vol_20"])
    y = (x["ret_1"] > 0).astype(int)
    clf = LogisticRegression().fit(x, y)
    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mlflow.start_run(experiment_id=experiment, run_name="audit-test") as run:
                mlflow.log_params({"model": "logistic", "features": "ret_1,rsi_14,vol_20", "seed": 0})
                mlflow.log_metrics({"accuracy": float(clf.score(x, y)), "log_loss": 0.25})
                mlflow.set_tags(
                    {"git_commit": commit, "mlflow.source.git.commit": commit, "dataset_sha256": "d" * 64}
                )
                dataset = mlflow.data.from_pandas(x, source="synthetic", name="synthetic", digest="d" * 32)
                mlflow.log_input(dataset, context="training")
                info = mlflow.sklearn.log_model(
                    clf, name="model", pip_requirements=["scikit-learn"], serialization_format="skops"
                )
            client.create_registered_model(name)
            version = client.create_model_version(
                name, source=f"models:/{info.model_id}", run_id=run.info.run_id, model_id=info.model_id
            )
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    return MlflowRun(uri, run.info.run_id, name, str(version.version), experiment)
