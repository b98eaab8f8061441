"""Trade a classifier's view of the next bar: long when the model's probability that the next
close is higher exceeds `threshold`, short below `1 - threshold`, flat in between.

The model is an MLflow model (`models:/NAME/VERSION` or `runs:/RUN_ID/model`) trained by
`methtrader model train`; the features it was trained on are read from its run. The probability
is an indicator: in a backtest the features of the whole series are built and predicted at once,
live a window of the last lookback + 1 bars is kept and the same `methtrader.ml.features` code
gives the same floats for the current bar. `decision_context(symbol)` returns what a decision was
made from — the feature vector, the raw bar window, the model URI, run id and version — and
`last_decision` holds it for the latest order, for the audit trail's features blob.
"""

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from methtrader.ml.features import RAW_COLUMNS, feature_matrix, lookback, raw_window, series_columns
from methtrader.ml.tracking import LoadedModel, ModelError, load_model
from methtrader.model import Bar, BarSeries, Order, Side
from methtrader.strategies.base import Strategy, StrategyError
from methtrader.strategies.indicators import Frame, Indicator


@dataclass(frozen=True)
class DecisionContext:
    """The inputs of one decision at bar `ts` of `symbol`."""

    symbol: str
    ts: int
    features: dict[str, float]
    window: dict[str, np.ndarray]  # raw bars ts, open, high, low, close, volume (oldest first)
    probability: float
    model_uri: str
    run_id: str
    model_name: str | None
    model_version: str | None

    def blob(self) -> dict[str, Any]:
        """The object the audit trail stores canonically (`methtrader.ml.blobs`)."""
        from methtrader.ml.blobs import decision_blob

        return decision_blob(
            self.features,
            self.window,
            symbol=self.symbol,
            ts=self.ts,
            probability=self.probability,
            model_uri=self.model_uri,
            run_id=self.run_id,
            model_name=self.model_name,
            model_version=self.model_version,
        )


class ModelProbability:
    """Indicator: P(next close > close) from the strategy's model; NaN while features warm up."""

    def __init__(self, strategy: "MlSignal") -> None:
        self.strategy = strategy

    def vector(self, series: BarSeries, tick: float | None = None) -> np.ndarray:
        s = self.strategy
        columns = series_columns(series)
        x = feature_matrix(columns, s.feature_names)
        p = s.predict(x)
        s._vectors[series.symbol] = (columns, x, p)
        return p

    def stream(self, tick: float | None = None) -> "_ModelStream":
        return _ModelStream(self.strategy)


class _ModelStream:
    def __init__(self, strategy: "MlSignal") -> None:
        self.strategy = strategy
        self.rows: deque[tuple[float, ...]] = deque(maxlen=lookback(strategy.feature_names) + 1)

    def update(self, bar: Bar) -> float:
        self.rows.append((bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume))
        s = self.strategy
        table = np.array(self.rows, dtype=float)
        columns = {name: np.ascontiguousarray(table[:, j]) for j, name in enumerate(RAW_COLUMNS)}
        columns["ts"] = columns["ts"].astype(np.int64)
        x = feature_matrix(columns, s.feature_names)[-1:]
        p = s.predict(x)
        s._streams[bar.symbol] = (columns, x[0], float(p[0]))
        return float(p[0])


class MlSignal(Strategy):
    name = "ml_signal"
    model: str = ""
    qty: Decimal = Decimal("0.1")
    threshold: float = 0.55
    tracking_uri: str = ""  # default: $METHTRADER_MLFLOW_TRACKING_URI or sqlite:///var/mlflow.db

    last_decision: DecisionContext | None

    def validate(self) -> None:
        if not self.model:
            raise StrategyError("ml_signal needs -p model=models:/NAME/VERSION (or runs:/RUN_ID/model)")
        if self.qty <= 0:
            raise StrategyError(f"ml_signal needs qty > 0, got {self.qty}")
        if not 0.5 <= self.threshold < 1:
            raise StrategyError(f"ml_signal needs 0.5 <= threshold < 1, got {self.threshold}")
        try:
            self.loaded: LoadedModel = load_model(self.model, self.tracking_uri or None)
        except ModelError as exc:
            raise StrategyError(str(exc)) from None
        self.feature_names = self.loaded.features
        self._vectors: dict[str, tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]] = {}
        self._streams: dict[str, tuple[dict[str, np.ndarray], np.ndarray, float]] = {}
        self.last_decision = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probability of an up bar for each row of features; NaN for rows still warming up."""
        p = np.full(len(x), np.nan)
        ok = np.isfinite(x).all(axis=1)
        if ok.any():
            import pandas as pd

            frame = pd.DataFrame(x[ok], columns=list(self.feature_names))
            p[ok] = self.loaded.predict_up(frame)
        return p

    def indicators(self) -> dict[str, Indicator]:
        return {"p_up": ModelProbability(self)}

    def signal(self, x: Frame) -> np.ndarray:
        p = x.p_up
        q = float(self.qty)
        side = np.where(p > self.threshold, q, np.where(p < 1.0 - self.threshold, -q, 0.0))
        return np.where(np.isnan(p), np.nan, side)

    # ------------------------------------------------------------------ lineage
    def decision_context(self, symbol: str) -> DecisionContext | None:
        """Features, raw window and model of the decision at the current bar of `symbol`."""
        loaded = self.loaded
        if symbol in self._streams:
            columns, x, p = self._streams[symbol]
            ts = int(columns["ts"][-1])
            window = {k: v.copy() for k, v in columns.items()}
        elif symbol in self._vectors:
            columns, xs, ps = self._vectors[symbol]
            k = int(np.searchsorted(columns["ts"], self._ctx.now(), "right")) - 1
            if k < 0:
                return None
            ts, x, p = int(columns["ts"][k]), xs[k], float(ps[k])
            window = raw_window(columns, k, self.feature_names)
        else:
            return None
        return DecisionContext(
            symbol=symbol,
            ts=ts,
            features={name: float(v) for name, v in zip(self.feature_names, x, strict=True)},
            window=window,
            probability=p,
            model_uri=loaded.uri,
            run_id=loaded.run_id,
            model_name=loaded.name,
            model_version=loaded.version,
        )

    def _order(self, side: Side, symbol: str, qty: object, price: object, **kwargs: Any) -> Order:
        self.last_decision = self.decision_context(symbol)
        return super()._order(side, symbol, qty, price, **kwargs)
