"""Market data: load and validate bar files, shipped datasets, resampling and synthetic bars.

Everything a backtest reads passes through here, so bad data fails loudly with file and row.
"""

from methtrader.data.datasets import (
    Dataset,
    dataset_names,
    get_dataset,
    load_dataset,
    provenance_text,
    resolve_bars,
)
from methtrader.data.errors import DataError
from methtrader.data.loaders import load_bars, save_bars
from methtrader.data.resample import resample
from methtrader.data.synthetic import gbm_bars

__all__ = [
    "DataError",
    "Dataset",
    "dataset_names",
    "gbm_bars",
    "get_dataset",
    "load_bars",
    "load_dataset",
    "provenance_text",
    "resample",
    "resolve_bars",
    "save_bars",
]
