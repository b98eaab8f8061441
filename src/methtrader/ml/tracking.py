"""MLflow access: where the tracking server is, a reachability check that fails fast, and model
loading with the run and registry facts lineage needs. MLflow is imported only when used.

Tracking URI: an explicit one, else `METHTRADER_MLFLOW_TRACKING_URI`, else `sqlite:///var/mlflow.db`
(an embedded database; artifacts go to `mlruns/` beside it). The registry uses the same URI.
"""

import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_TRACKING_URI = "sqlite:///var/mlflow.db"
ENV_TRACKING_URI = "METHTRADER_MLFLOW_TRACKING_URI"
EXPERIMENT = "methtrader"
PROBE_TIMEOUT_S = 5.0


class ModelError(Exception):
    """MLflow unreachable, unknown model, unusable model: a one-line message for the user."""


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get(ENV_TRACKING_URI) or DEFAULT_TRACKING_URI


def _quiet_mlflow() -> Any:
    """Import mlflow with telemetry off and without its logging set-up: on import MLflow gives the
    `mlflow`, `sqlalchemy.engine`, `alembic` and `huey` loggers a stderr handler of its own and
    stops them propagating, which would bypass our JSON logs and their secret redaction."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    import mlflow

    for name in ("mlflow", "sqlalchemy.engine", "alembic", "huey"):
        logger = logging.getLogger(name)
        if any(type(h.formatter).__name__ == "MlflowFormatter" for h in logger.handlers):
            logger.handlers = []  # configured by an import that came before ours
            logger.propagate = True
        if name in ("mlflow", "alembic"):
            logger.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"mlflow\..*")
    return mlflow


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, None for anything else."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def artifact_root(uri: str) -> str | None:
    """Where runs' artifacts go for an embedded store: `mlruns/` beside the database file."""
    db = sqlite_path(uri)
    return (db.resolve().parent / "mlruns").as_uri() if db is not None else None


def connect(uri: str, must_exist: bool = False) -> Any:
    """An MlflowClient for `uri` once it answers; ModelError (one line) if it does not. With
    `must_exist` a SQLite store must already be there (a reader never creates an empty one)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        import httpx

        try:
            httpx.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise ModelError(f"MLflow tracking server {uri} is unreachable: {type(exc).__name__}") from None
    db = sqlite_path(uri)
    if db is not None and must_exist and not db.is_file():
        raise ModelError(f"MLflow tracking database {db} does not exist (tracking URI {uri})")
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(
                f"cannot create the MLflow database folder {db.parent}: {exc.strerror}"
            ) from None
    mlflow = _quiet_mlflow()
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # any backend failure: bad scheme, locked or unreadable database, HTTP error
        raise ModelError(f"MLflow at {uri} is not usable: {_one_line(exc)}") from None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return client


def experiment_id(client: Any, uri: str, name: str = EXPERIMENT) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(uri))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[:300]


# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    """A model ready to predict, with what lineage records about it."""

    uri: str  # as given: models:/NAME/VERSION or runs:/ID/model
    model: Any  # a fitted scikit-learn classifier with predict_proba
    run_id: str
    name: str | None  # registered model name (models:/ URIs)
    version: str | None
    features: tuple[str, ...]
    tracking_uri: str

    def predict_up(self, x: Any) -> Any:
        """Probability that the next bar closes higher, for rows of features (no NaN)."""
        import numpy as np

        return np.asarray(self.model.predict_proba(x))[:, 1]


_CACHE: dict[tuple[str, str], LoadedModel] = {}
_LOCK = threading.Lock()


def load_model(model_uri: str, uri: str | None = None) -> LoadedModel:
    """Load `models:/NAME/VERSION` or `runs:/RUN_ID/model` once per process (cached)."""
    uri = tracking_uri(uri)
    key = (uri, model_uri)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        loaded = _load(model_uri, uri)
        _CACHE[key] = loaded
        return loaded


def _load(model_uri: str, uri: str) -> LoadedModel:
    from methtrader.ml.features import FeatureError, parse_features

    name = version = None
    if model_uri.startswith("models:/"):
        parts = model_uri[len("models:/") :].split("/")
        if len(parts) != 2 or not all(parts):
            raise ModelError(f"model URI {model_uri!r} must look like models:/NAME/VERSION")
        name, version = parts
    elif model_uri.startswith("runs:/"):
        parts = model_uri[len("runs:/") :].split("/", 1)
        if len(parts) != 2 or not all(parts):
            raise ModelError(f"model URI {model_uri!r} must look like runs:/RUN_ID/model")
        run_id = parts[0]
    else:
        raise ModelError(f"model URI {model_uri!r} must be models:/NAME/VERSION or runs:/RUN_ID/model")
    client = connect(uri)
    try:
        if name is not None:
            run_id = client.get_model_version(name, version).run_id
        run = client.get_run(run_id)
    except Exception as exc:
        raise ModelError(f"unknown model {model_uri!r} in {uri}: {_one_line(exc)}") from None
    try:
        features = parse_features(run.data.params.get("features"))
    except FeatureError as exc:
        raise ModelError(f"model {model_uri!r} was trained on features this version lacks: {exc}") from None
    try:
        import mlflow.sklearn

        model = mlflow.sklearn.load_model(model_uri)
    except Exception as exc:
        raise ModelError(f"cannot load model {model_uri!r}: {_one_line(exc)}") from None
    if not hasattr(model, "predict_proba"):
        raise ModelError(f"model {model_uri!r} is not a classifier with predict_proba")
    return LoadedModel(model_uri, model, run_id, name, version, features, uri)
