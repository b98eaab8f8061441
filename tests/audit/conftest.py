"""A real trade to pull: an order with events, two fills, lineage pointing at a features blob and an
MLflow run with a registered version (a tiny scikit-learn model in a temp SQLite tracking store)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from methtrader.ml.blobs import BlobStore, decision_blob
from methtrader.store import Database, ledger
from support.mlflow_run import COMMIT, MlflowRun, log_tiny_model
from support.sealed import seal_trade

T0 = 1_764_000_000_000


@pytest.fixture(scope="session")
def mlflow_run(tmp_path_factory: pytest.TempPathFactory) -> MlflowRun:
    """A logistic regression logged to a temp SQLite MLflow store and registered (version 1)."""
    return log_tiny_model(tmp_path_factory.mktemp("mlflow"))


@dataclass(frozen=True)
class Trade:
    trade_id: str
    db: Database
    blobs: Path
    features_hash: str
    run: MlflowRun


def make_trade(db: Database, blobs: Path, run: MlflowRun, trade_id: str = "mt-audit-0001") -> Trade:
    """An ml_signal buy: order, three events, two partial fills, lineage with its risk snapshot."""
    window = {
        "ts": np.arange(T0 - 5 * 3_600_000, T0, 3_600_000),
        "close": np.array([100.0, 101, 99.5, 100.5, 102]),
    }
    blob = decision_blob({"ret_1": 0.0149, "rsi_14": 57.25, "vol_20": float("nan")}, window, symbol="BTCUSDT")
    features_hash = BlobStore(blobs).put(blob)
    params = {"model": f"models:/{run.name}/{run.version}", "threshold": 0.55, "qty": "0.010"}
    with db.begin() as conn:
        ledger.insert_order(
            conn,
            trade_id=trade_id,
            exchange_order_id="ex-9f1c",
            symbol="BTCUSDT",
            side="Buy",
            type="Limit",
            qty=Decimal("0.010"),
            price=Decimal("102.5"),
            status="Filled",
            filled_qty=Decimal("0.010"),
            mode="paper",
            strategy="ml_signal",
            params_hash=ledger.params_hash(params),
            created_ts=T0,
            updated_ts=T0 + 2_500,
        )
        ledger.insert_lineage(
            conn,
            trade_id=trade_id,
            strategy="ml_signal",
            params=params,
            model_run_id=run.run_id,
            model_name=run.name,
            model_version=run.version,
            code_commit=COMMIT,
            code_dirty=False,
            features_hash=features_hash,
            risk_snapshot={
                "guard_state": "ACTIVE",
                "var_99_1d": "123.45",
                "var_ratio": 0.0123,
                "limits": {"var_limit": 0.05, "max_position_qty": "1", "max_order_notional": "50000"},
                "equity": "10000",
            },
            created_ts=T0,
        )
        for seq, kind, status, ts in [
            (1, "sent", None, T0),
            (2, "ack", "New", T0 + 100),
            (3, "filled", "Filled", T0 + 2_500),
        ]:
            ledger.append_order_event(
                conn, trade_id, seq=seq, kind=kind, status=status, ts=ts, payload={"orderLinkId": trade_id}
            )
        ledger.record_fills(
            conn,
            [
                {
                    "exec_id": f"{trade_id}-e1",
                    "trade_id": trade_id,
                    "symbol": "BTCUSDT",
                    "side": "Buy",
                    "qty": Decimal("0.004"),
                    "price": Decimal("102.5"),
                    "fee": Decimal("0.0002255"),
                    "liquidity": "maker",
                    "ts": T0 + 1_000,
                },
                {
                    "exec_id": f"{trade_id}-e2",
                    "trade_id": trade_id,
                    "symbol": "BTCUSDT",
                    "side": "Buy",
                    "qty": Decimal("0.006"),
                    "price": Decimal("102.4"),
                    "fee": Decimal("0.00033792"),
                    "liquidity": "maker",
                    "ts": T0 + 2_500,
                },
            ],
        )
    seal_trade(db, trade_id)
    return Trade(trade_id, db, blobs, features_hash, run)


@pytest.fixture
def trade(database: Database, tmp_path: Path, mlflow_run: MlflowRun) -> Trade:
    """The trade on each backend (SQLite and the private PostgreSQL)."""
    return make_trade(database, tmp_path / "blobs", mlflow_run)


@pytest.fixture
def sqlite_trade(
    tmp_path: Path, mlflow_run: MlflowRun, tmp_path_factory: pytest.TempPathFactory, _ledger_templates: dict
) -> Iterator[Trade]:
    """The trade in a fresh, migrated SQLite ledger only (for the bad-input cases)."""
    from support import ledger_db

    if "sqlite" not in _ledger_templates:
        _ledger_templates["sqlite"] = ledger_db.migrate_sqlite_template(
            tmp_path_factory.mktemp("ledger-template")
        )
    db = Database.from_url(ledger_db.fresh_sqlite(_ledger_templates["sqlite"], tmp_path))
    try:
        yield make_trade(db, tmp_path / "blobs", mlflow_run)
    finally:
        db.close()
