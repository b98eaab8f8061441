"""Execution ids: a reproducible sequence for backtests, UUIDs for a venue that outlives a run.

Bybit's execId is a UUID, unique for all time; a ledger keyed on it must never see one twice.
A backtest wants the opposite: the same run gives the same ids, so its output can be diffed.
"""

import itertools
import uuid
from collections.abc import Callable

ExecIds = Callable[[], str]


def sequential_ids(prefix: str = "E") -> ExecIds:
    """E1, E2, ... afresh for each call: deterministic, unique within one engine only."""
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def uuid_ids() -> str:
    """A random UUID4 string, as Bybit's execId: unique across sessions and processes."""
    return str(uuid.uuid4())
