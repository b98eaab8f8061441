"""methtrader: auditable algorithmic trading for Bybit — one engine for backtest, paper and live."""

__version__ = "0.1.0"

import os as _os

# MLflow would otherwise give its, SQLAlchemy's and Alembic's loggers their own plain-text stderr
# handler and stop them propagating: their lines would skip our JSON logs and secret redaction.
_os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
