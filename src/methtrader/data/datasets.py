"""Registry of the market data shipped inside the package, looked up by short name.

Crash tests and examples refer to `btcusd-daily` rather than a path, so they run anywhere the
package is installed; provenance of every file is in datasets/SOURCES.md.
"""

from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

from methtrader.data.errors import DataError
from methtrader.data.loaders import load_bars
from methtrader.model.bar import BarSeries
from methtrader.model.instrument import BTCUSDT, Instrument, generic_perpetual


@dataclass(frozen=True)
class Dataset:
    """One shipped bar file, the instrument it is traded as, and where its data came from."""

    name: str
    filename: str
    instrument: Instrument
    description: str
    source: str

    @property
    def resource(self) -> Traversable:
        """The packaged file (a real path for normal installs)."""
        return _datasets_dir() / self.filename


_DATASETS = (
    Dataset(
        name="btcusd-daily",
        filename="BTCUSD_daily.csv",
        instrument=BTCUSDT,
        description="BTC/USD daily bars, 2014-09-17 .. 2024-07-25 (every calendar day, 3600 rows)",
        source=(
            "Yahoo Finance BTC-USD, via GitHub NikJagan/Master-Thesis-Solana-Price-Prediction"
            " @0362ea5c datasets/BTC-USD.csv"
        ),
    ),
    Dataset(
        name="btcusdt-1h-2019-2020",
        filename="BTCUSDT_1h_binance_2019-2020.csv",
        instrument=BTCUSDT,
        description="Binance BTC/USDT hourly bars, 2019-01-01 .. 2020-12-29 (17491 rows)",
        source=(
            "Binance BTC/USDT 1h (CryptoDataDownload export), via GitHub IngiOrn/crypto_data"
            " @547bb149 Binance_BTCUSDT_1h.csv"
        ),
    ),
    Dataset(
        name="btcusdt-5m-2021",
        filename="BTCUSDT_5m_binance_2021-03-16_2021-06-14.csv",
        instrument=BTCUSDT,
        description="Binance BTC/USDT 5-minute bars, 2021-03-16 .. 2021-06-14 (25966 rows)",
        source=(
            "Binance BTC/USDT 5m (freqtrade download), via GitHub samgermain/binance_usdt"
            " @e8b5336e BTC_USDT-5m.json"
        ),
    ),
    Dataset(
        name="spx-daily",
        filename="SPX_daily.csv",
        instrument=generic_perpetual("SPXUSDT", "SPX"),
        description="S&P 500 index daily bars, 1982-04-20 .. 2023-12-28 (10512 rows)",
        source=("Yahoo Finance ^GSPC, via GitHub fja05680/stock_market_calendar @7041e86b ^GSPC.csv (MIT)"),
    ),
    Dataset(
        name="ndx-daily",
        filename="NDX_daily.csv",
        instrument=generic_perpetual("NDXUSDT", "NDX"),
        description="Nasdaq-100 index daily bars, 1985-10-01 .. 2024-04-11 (9710 rows)",
        source=(
            "Yahoo Finance ^NDX, via GitHub jingyanwang/nasdaq_100_3x_leverage_simulation @26fe91d1 ^NDX.csv"
        ),
    ),
)
_BY_NAME = {dataset.name: dataset for dataset in _DATASETS}


def dataset_names() -> list[str]:
    """Names of the shipped datasets, in registry order."""
    return list(_BY_NAME)


def get_dataset(name: str) -> Dataset:
    """The registered dataset called `name`; DataError lists the known names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise DataError(f"unknown dataset {name!r} (known: {known})") from None


@lru_cache(maxsize=16)
def load_dataset(name: str) -> BarSeries:
    """Bars of a shipped dataset under its instrument's symbol, parsed once per process.

    The result is shared between callers, so its arrays are read-only.
    """
    dataset = get_dataset(name)
    with as_file(dataset.resource) as path:
        series = load_bars(path, symbol=dataset.instrument.symbol)
    for column in (series.ts, series.open, series.high, series.low, series.close, series.volume):
        column.flags.writeable = False
    return series


def resolve_bars(name_or_path: str, symbol: str | None = None) -> tuple[BarSeries, Instrument]:
    """Bars and instrument for a dataset name or, failing that, a bar file path.

    A given `symbol` relabels the bars; a file's instrument is BTCUSDT for symbol BTCUSDT and a
    generic perpetual otherwise. A registered name wins over a file of the same name.
    """
    if name_or_path in _BY_NAME:
        dataset = _BY_NAME[name_or_path]
        series = load_dataset(name_or_path)
        if symbol is None or symbol == dataset.instrument.symbol:
            return series, dataset.instrument
        return series.with_symbol(symbol), instrument_for(symbol)
    if not Path(name_or_path).is_file():
        known = ", ".join(_BY_NAME)
        raise DataError(f"unknown dataset or file {name_or_path!r} (datasets: {known})")
    series = load_bars(name_or_path, symbol)
    return series, instrument_for(series.symbol)


def instrument_for(symbol: str) -> Instrument:
    """BTCUSDT's real contract for that symbol, a generic cent-tick perpetual for anything else."""
    return BTCUSDT if symbol == BTCUSDT.symbol else generic_perpetual(symbol)


def provenance_text() -> str:
    """SOURCES.md: where each shipped file came from, how it was cleaned, and its SHA-256."""
    return (_datasets_dir() / "SOURCES.md").read_text(encoding="utf-8")


def _datasets_dir() -> Traversable:
    return files("methtrader.data") / "datasets"
