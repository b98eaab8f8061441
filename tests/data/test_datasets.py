"""Shipped datasets: registry lookups, and the files match what SOURCES.md says about them.

SOURCES.md is the provenance record; if a file is edited without updating it, these tests fail.
"""

import hashlib
import re
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from methtrader.data import (
    DataError,
    Dataset,
    dataset_names,
    get_dataset,
    load_dataset,
    resolve_bars,
    save_bars,
)
from methtrader.data.datasets import provenance_text
from methtrader.model.instrument import BTCUSDT, generic_perpetual

DATASETS_DIR = files("methtrader.data") / "datasets"
NAMES = ["btcusd-daily", "btcusdt-1h-2019-2020", "btcusdt-5m-2021", "spx-daily", "ndx-daily"]


def sources_table() -> dict[str, tuple[int, str, str]]:
    """filename -> (rows, first, last) from the summary table of SOURCES.md."""
    row = re.compile(r"^\| `([^`]+)` \| (\d+) \| (\S+) \.\. (\S+)", re.MULTILINE)
    return {m[1]: (int(m[2]), m[3], m[4]) for m in row.finditer(provenance_text())}


def sources_hashes() -> dict[str, str]:
    """filename -> SHA-256 from the code block under the "SHA-256" heading of SOURCES.md."""
    block = provenance_text().split("### SHA-256", 1)[1].split("```")[1]
    return {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})\s+(\S+)$", block, re.M)}


def to_ms(text: str) -> int:
    return int(pd.Timestamp(text.rstrip("Z"), tz="UTC").value // 1_000_000)


def test_registry_names_and_metadata() -> None:
    assert dataset_names() == NAMES
    shipped = sorted(p.name for p in DATASETS_DIR.iterdir() if p.name.endswith(".csv"))
    assert sorted(get_dataset(name).filename for name in NAMES) == shipped
    for name in NAMES:
        dataset = get_dataset(name)
        assert isinstance(dataset, Dataset)
        assert dataset.name == name
        assert dataset.description and "\n" not in dataset.description
        assert dataset.source and "\n" not in dataset.source
    assert get_dataset("spx-daily").instrument == generic_perpetual("SPXUSDT", "SPX")
    assert get_dataset("ndx-daily").instrument == generic_perpetual("NDXUSDT", "NDX")
    assert get_dataset("btcusdt-5m-2021").instrument is BTCUSDT


@pytest.mark.parametrize("name", NAMES)
def test_dataset_matches_sources_table(name: str) -> None:
    dataset = get_dataset(name)
    rows, first, last = sources_table()[dataset.filename]
    series = load_dataset(name)
    assert series.symbol == dataset.instrument.symbol
    assert len(series) == rows
    assert int(series.ts[0]) == to_ms(first)
    assert int(series.ts[-1]) == to_ms(last)


def test_shipped_files_match_sha256_in_sources() -> None:
    hashes = sources_hashes()
    assert sorted(hashes) == sorted(get_dataset(name).filename for name in NAMES)
    for filename, digest in hashes.items():
        data = (DATASETS_DIR / filename).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, filename


def test_known_values_from_sources() -> None:
    btc = load_dataset("btcusd-daily")
    crash = btc.bar(int(np.searchsorted(btc.ts, to_ms("2020-03-12"))))
    assert crash.close == pytest.approx(4970.79, abs=0.01)
    spx = load_dataset("spx-daily")
    black_monday = spx.bar(int(np.searchsorted(spx.ts, to_ms("1987-10-19"))))
    assert black_monday.close == 224.84


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DataError) as exc:
        get_dataset("btc")
    assert str(exc.value) == f"unknown dataset 'btc' (known: {', '.join(NAMES)})"


def test_load_dataset_is_cached_and_read_only() -> None:
    series = load_dataset("btcusd-daily")
    assert load_dataset("btcusd-daily") is series
    with pytest.raises(ValueError):
        series.close[0] = 1.0


def test_resolve_bars_by_name() -> None:
    series, instrument = resolve_bars("ndx-daily")
    assert instrument == generic_perpetual("NDXUSDT", "NDX")
    assert series.symbol == "NDXUSDT"
    series, instrument = resolve_bars("btcusd-daily", symbol="BTCUSDT")
    assert instrument is BTCUSDT
    relabelled, instrument = resolve_bars("btcusd-daily", symbol="XBT")
    assert relabelled.symbol == "XBT"
    assert instrument == generic_perpetual("XBT")


def test_resolve_bars_by_path(tmp_path: Path) -> None:
    bars = load_dataset("btcusd-daily").take(slice(0, 10))
    btc_path = tmp_path / "btc-usdt.csv"
    save_bars(bars, btc_path)
    series, instrument = resolve_bars(str(btc_path))
    assert (series.symbol, instrument) == ("BTCUSDT", BTCUSDT)
    series, instrument = resolve_bars(str(btc_path), symbol="ETHUSDT")
    assert series.symbol == "ETHUSDT"
    assert instrument == generic_perpetual("ETHUSDT")
    assert instrument.base_coin == "ETH"


def test_resolve_bars_unknown() -> None:
    with pytest.raises(DataError) as exc:
        resolve_bars("no-such-thing.csv")
    expected = f"unknown dataset or file 'no-such-thing.csv' (datasets: {', '.join(NAMES)})"
    assert str(exc.value) == expected
