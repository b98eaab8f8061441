"""write_outputs produces every file, parseable and consistent with the result it came from."""

import csv
import json

import numpy as np
import pytest

from methtrader.report import compute_stats, drawdown_series, write_outputs
from methtrader.report.downsample import extreme_indices

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _rows(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def result(make_result, make_fill):
    fills = [
        make_fill("Buy", "1", "100", "0.1", 1_609_459_200_000, position_after="1", n=1),
        make_fill("Sell", "3", "110", "0.3", 1_609_545_600_000, realised="10", position_after="-2", n=2),
        make_fill("Buy", "2", "105", "0.2", 1_609_632_000_000, realised="10", n=3),
        make_fill("Buy", "1", "120", "0.12", 1_609_632_000_000, position_after="1", n=4),
    ]
    return make_result(
        [100, 110, 99, 121],
        gross=[0, 100, 200, 120],
        fills=fills,
        strategy="sma<cross>",
        params={"fast": 10, "note": "a&b"},
    )


def test_write_outputs_writes_every_file(tmp_path, result):
    stats = compute_stats(result)
    out = tmp_path / "nested" / "run"
    paths = write_outputs(result, stats, out)

    assert set(paths) == {"trades", "fills", "equity", "json", "png", "html"}
    assert all(p.parent == out and p.is_file() for p in paths.values())

    trades = _rows(paths["trades"])
    assert [(t["side"], t["open"]) for t in trades] == [
        ("Long", "False"),
        ("Short", "False"),
        ("Long", "True"),
    ]
    assert trades[0]["entry_time"] == "2021-01-01T00:00:00.000Z"
    assert trades[2]["exit_time"] == "" and trades[2]["exit_price"] == ""
    assert trades[0]["pnl"] == "9.8"  # 10 − 0.1 − 0.3 × 1/3

    fills = _rows(paths["fills"])
    assert len(fills) == 4
    assert fills[1]["trade_id"] == "t2"
    assert fills[1]["side"] == "Sell"
    assert fills[1]["position_after"] == "-2"
    assert fills[1]["liquidation"] == "False"

    equity = _rows(paths["equity"])
    assert len(equity) == 4
    assert [float(r["equity"]) for r in equity] == [100, 110, 99, 121]
    assert float(equity[2]["drawdown"]) == pytest.approx(-0.1)
    assert equity[3]["ts_ms"] == "1609718400000"

    assert json.loads(paths["json"].read_text())["bars"] == 4
    assert paths["png"].read_bytes().startswith(PNG_SIGNATURE)

    page = paths["html"].read_text()
    assert "data:image/png;base64," in page
    assert "Sharpe" in page and "21.00%" in page and "-10.00%" in page
    assert "sma&lt;cross&gt;" in page and "sma<cross>" not in page
    assert "a&amp;b" in page
    assert 'href="trades.csv"' in page and 'href="equity.csv"' in page


def test_outputs_for_a_run_without_fills(tmp_path, make_result):
    result = make_result([100.0])
    paths = write_outputs(result, compute_stats(result), tmp_path)
    assert _rows(paths["trades"]) == []
    assert _rows(paths["fills"]) == []
    assert len(_rows(paths["equity"])) == 1
    assert paths["png"].read_bytes().startswith(PNG_SIGNATURE)


def test_long_curve_is_charted_from_downsampled_points(tmp_path, make_result):
    rng = np.random.default_rng(7)
    equity = 1000 * np.cumprod(1 + rng.normal(0, 0.01, 20_000))
    equity[12_345] *= 0.5  # one-bar crash that must survive downsampling
    result = make_result(equity, ts=1_600_000_000_000 + 300_000 * np.arange(equity.size))
    paths = write_outputs(result, compute_stats(result), tmp_path)
    assert paths["png"].read_bytes().startswith(PNG_SIGNATURE)
    assert len(_rows(paths["equity"])) == 20_000


def test_extreme_indices_keep_global_extremes_within_budget():
    rng = np.random.default_rng(1)
    equity = 100 + np.cumsum(rng.normal(0, 1, 100_000))
    dd = drawdown_series(equity)
    keep = extreme_indices([equity, dd], 5000, keep_max=(True, False))
    assert keep.size <= 5000
    assert np.all(np.diff(keep) > 0)
    assert keep[0] == 0 and keep[-1] == equity.size - 1
    assert dd.argmin() in keep and equity.argmax() in keep and equity.argmin() in keep
    assert extreme_indices([equity[:10]], 5000).tolist() == list(range(10))
