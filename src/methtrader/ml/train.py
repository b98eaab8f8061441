"""Train a classifier of the next bar's direction and record it in MLflow.

Features from `methtrader.ml.features`; a time-ordered split (the last `test_fraction` of the rows
is the test set, never shuffled); scikit-learn's LogisticRegression (standardised inputs) or
HistGradientBoostingClassifier. The run records parameters, test metrics (accuracy, log loss,
ROC AUC), the dataset digest (SHA-256 of the canonical bars, also as an MLflow dataset input), the
code commit and dirty flag, and the model (skops format, with a signature). Only a finished run
is registered as a new version of the model name: a failure before that registers nothing.
"""

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from methtrader.ml.features import DEFAULT_FEATURES, lookback, training_set
from methtrader.ml.tracking import ModelError, _one_line, _quiet_mlflow, connect, experiment_id, tracking_uri
from methtrader.model import BarSeries

MODELS = ("logistic", "gbm")
# a HistGradientBoosting model holds tree predictors skops does not trust by default; we wrote them
SKOPS_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
MIN_ROWS = 100


@dataclass(frozen=True)
class TrainConfig:
    data: str
    model: str = "logistic"
    features: tuple[str, ...] = DEFAULT_FEATURES
    name: str | None = None  # registered model name; default methtrader-<model>
    tracking_uri: str | None = None
    test_fraction: float = 0.25
    start_ms: int | None = None
    end_ms: int | None = None
    seed: int = 0

    @property
    def registered_name(self) -> str:
        return self.name or f"methtrader-{self.model}"


@dataclass
class TrainResult:
    run_id: str
    name: str
    version: str
    model_uri: str  # models:/NAME/VERSION
    run_model_uri: str  # runs:/RUN_ID/model
    tracking_uri: str
    experiment_id: str
    metrics: dict[str, float]
    dataset_digest: str
    features: tuple[str, ...]
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "name": self.name,
            "version": self.version,
            "model_uri": self.model_uri,
            "run_model_uri": self.run_model_uri,
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.experiment_id,
            "metrics": self.metrics,
            "dataset_digest": self.dataset_digest,
            "features": list(self.features),
            "rows": self.rows,
        }


def bars_digest(series: BarSeries) -> str:
    """SHA-256 of the canonical bars: the columns ts (int64) and open, high, low, close, volume
    (float64), each little-endian, in that order, after a header naming them and the row count."""
    digest = hashlib.sha256(f"methtrader-bars-v1 ts,open,high,low,close,volume n={len(series)}\n".encode())
    digest.update(np.ascontiguousarray(series.ts, dtype="<i8").tobytes())
    for name in ("open", "high", "low", "close", "volume"):
        digest.update(np.ascontiguousarray(getattr(series, name), dtype="<f8").tobytes())
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_classifier(kind: str, seed: int = 0) -> Any:
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if kind == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.05, max_leaf_nodes=15, early_stopping=False, random_state=seed
        )
    raise ModelError(f"unknown model {kind!r} (known: {', '.join(MODELS)})")


def split(n: int, test_fraction: float) -> int:
    """Index of the first test row: the last `test_fraction` of the rows, in time order."""
    if not 0 < test_fraction < 1:
        raise ModelError(f"test fraction must be between 0 and 1, got {test_fraction}")
    n_test = max(1, round(n * test_fraction))
    return n - n_test


def evaluate(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    metrics = {
        "accuracy": float(accuracy_score(y, proba >= 0.5)),
        "log_loss": float(log_loss(y, np.column_stack([1 - proba, proba]), labels=[0, 1])),
        "up_rate": float(np.mean(y)),
    }
    if len(np.unique(y)) == 2:
        metrics["auc"] = float(roc_auc_score(y, proba))
    return metrics


def train_model(
    config: TrainConfig,
    series: BarSeries,
    source: str,
    status: Callable[[str], None] = lambda message: None,
    source_file: Path | None = None,
) -> TrainResult:
    """Train on `series` (named `source`) and record it in MLflow; ModelError on bad input or an
    unusable MLflow, raised before anything is registered."""
    make_classifier(config.model, config.seed)  # unknown kind fails before any work
    if config.start_ms is not None or config.end_ms is not None:
        series = series.between(config.start_ms, config.end_ms)
    names = tuple(config.features)
    x, y, rows = training_set(series, names)
    if len(y) < MIN_ROWS:
        raise ModelError(
            f"{source}: {len(y)} usable rows after the features' warm-up; need at least {MIN_ROWS}"
        )
    cut = split(len(y), config.test_fraction)
    if len(np.unique(y[:cut])) < 2:
        raise ModelError(f"{source}: the training rows have only one class")
    uri = tracking_uri(config.tracking_uri)
    status(f"connecting to MLflow at {uri}")
    client = connect(uri)
    exp_id = experiment_id(client, uri)

    status(f"training {config.model} on {cut} rows, testing on {len(y) - cut}")
    clf = make_classifier(config.model, config.seed)
    import pandas as pd

    x_train = pd.DataFrame(x[:cut], columns=list(names))
    x_test = pd.DataFrame(x[cut:], columns=list(names))
    clf.fit(x_train, y[:cut])
    proba = np.asarray(clf.predict_proba(x_test))[:, 1]
    metrics = evaluate(y[cut:], proba)
    metrics["train_accuracy"] = float(np.mean((clf.predict_proba(x_train)[:, 1] >= 0.5) == y[:cut]))

    digest = bars_digest(series)
    from methtrader.ops.build import build_info

    build = build_info()
    ts = series.ts[rows]
    params = {
        "model": config.model,
        "features": ",".join(names),
        "lookback": lookback(names),
        "label": "next bar close > close",
        "data": source,
        "symbol": series.symbol,
        "bars": len(series),
        "test_fraction": config.test_fraction,
        "rows_train": cut,
        "rows_test": len(y) - cut,
        "train_first_ts": int(ts[0]),
        "train_last_ts": int(ts[cut - 1]),
        "test_first_ts": int(ts[cut]),
        "test_last_ts": int(ts[-1]),
        "seed": config.seed,
    }
    params.update({f"clf_{k}": v for k, v in _hyperparams(clf).items()})
    tags = {
        "git_commit": build.commit,
        "git_dirty": str(build.dirty).lower(),
        "mlflow.source.git.commit": build.commit,
        "methtrader_version": build.version,
        "dataset_sha256": digest,
        "dataset_name": source,
    }
    if source_file is not None:
        tags["data_file_sha256"] = file_digest(source_file)

    _quiet_mlflow()
    import mlflow
    import mlflow.data
    import mlflow.sklearn
    from mlflow.models import infer_signature

    status("logging the run to MLflow")
    try:
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{config.model}-{source}") as run:
            run_id = run.info.run_id
            mlflow.log_params(params)
            mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
            mlflow.set_tags(tags)
            bars = pd.DataFrame(
                {k: getattr(series, k) for k in ("ts", "open", "high", "low", "close", "volume")}
            )
            # the MLflow dataset digest column holds 36 characters: the full SHA-256 is the tag
            dataset = mlflow.data.from_pandas(
                bars, source=str(source_file or source), name=source, digest=digest[:32]
            )
            mlflow.log_input(dataset, context="training")
            info = mlflow.sklearn.log_model(
                clf,
                name="model",
                signature=infer_signature(x_test.iloc[:50], proba[:50]),
                pip_requirements=_requirements(),
                skops_trusted_types=SKOPS_TRUSTED if config.model == "gbm" else None,
                serialization_format="skops",
            )
        status(f"registering {config.registered_name}")
        try:
            client.create_registered_model(config.registered_name)
        except Exception as exc:
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise
        version = client.create_model_version(
            config.registered_name,
            source=f"models:/{info.model_id}",
            run_id=run_id,
            model_id=info.model_id,
            tags={"dataset_sha256": digest, "git_commit": build.commit},
        )
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"MLflow at {uri} failed while recording the model: {_one_line(exc)}") from None
    return TrainResult(
        run_id=run_id,
        name=config.registered_name,
        version=str(version.version),
        model_uri=f"models:/{config.registered_name}/{version.version}",
        run_model_uri=f"runs:/{run_id}/model",
        tracking_uri=uri,
        experiment_id=exp_id,
        metrics=metrics,
        dataset_digest=digest,
        features=names,
        rows={"train": cut, "test": len(y) - cut},
    )


def _hyperparams(clf: Any) -> dict[str, Any]:
    est = clf.steps[-1][1] if hasattr(clf, "steps") else clf
    keep = (
        "C",
        "max_iter",
        "penalty",
        "learning_rate",
        "max_leaf_nodes",
        "l2_regularization",
        "random_state",
    )
    return {k: v for k, v in est.get_params().items() if k in keep}


def _requirements() -> list[str]:
    """Pinned from the running environment: MLflow's own inference starts a subprocess."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "skops", "numpy", "scipy")]
