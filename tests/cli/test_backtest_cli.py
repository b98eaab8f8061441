"""`methtrader backtest` end to end: reports, JSON, output files, and one-line errors (exit 2)."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from methtrader.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["backtest", *args])


def test_json_report_on_shipped_daily_btc(tmp_path):
    out = tmp_path / "report"
    result = invoke(
        "--data", "btcusd-daily", "-p", "fast=20", "-p", "slow=50", "--from", "2018-01-01",
        "--to", "2022-01-01", "--leverage", "2", "--slippage", "0.0005", "--json", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["start"].startswith("2018-01-01") and stats["end"].startswith("2021-12-31")
    assert stats["bars"] == 1461
    expected = "total_return cagr annual_volatility sharpe sortino max_drawdown max_drawdown_days trades"
    for key in (*expected.split(), "win_rate", "profit_factor", "exposure", "fees_paid"):
        assert key in stats
    assert stats["trades"] > 5 and stats["fees_paid"] > 0
    assert set(stats["outputs"]) >= {"trades", "equity", "html", "png"}
    for name in ("trades.csv", "equity.csv", "fills.csv", "report.html", "report.png"):
        assert (out / name).stat().st_size > 0
    equity_rows = (out / "equity.csv").read_text().strip().splitlines()
    assert len(equity_rows) == 1 + 1461


def test_human_report_prints_metrics():
    result = invoke("--data", "spx-daily", "--from", "2008-01-01", "--to", "2009-12-31", "-p", "qty=1")
    assert result.exit_code == 0, result.output
    for label in ("Total return", "CAGR", "Sharpe", "Sortino", "Max drawdown", "Win rate", "Profit factor"):
        assert label in result.stdout


def test_guard_runs_by_default_and_can_be_switched_off():
    args = ["--data", "btcusd-daily", "-p", "qty=1", "--leverage", "3", "--json"]
    guarded = json.loads(invoke(*args).stdout)
    assert guarded["guard_state"].startswith("HALTED (var_liquidation")
    assert guarded["guard_liquidations"] == 1 and guarded["orders_denied"] > 0
    unguarded = json.loads(invoke(*args, "--no-guard").stdout)
    assert unguarded["guard_state"] == "off" and unguarded["trades"] > guarded["trades"]
    bad = invoke("--var-limit", "3")
    assert bad.exit_code == 2 and "--var-limit must be a fraction" in bad.stderr


def test_resampled_run():
    result = invoke("--resample", "4h", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["bars"] == 4374  # 17,491 hourly bars in 4-hour UTC buckets


def test_user_strategy_file(tmp_path):
    path = tmp_path / "always_long.py"
    path.write_text(
        "from methtrader.strategies import Strategy\n\n"
        "class AlwaysLong(Strategy):\n"
        "    def on_bar(self, bar):\n"
        "        self.target_position(bar.symbol, '0.01')\n"
    )
    result = invoke("--strategy", f"{path}:AlwaysLong", "--json", "--to", "2019-02-01")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["open_trades"] == 1 and stats["exposure"] > 0.99


def _malformed(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("datetime,open,high,low,close,volume\n2020-01-01T00:00:00Z,10,11,9,10,1\n"
                    "2020-01-01T01:00:00Z,10,9,8,10,1\n")  # fmt: skip
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "no-such-dataset"], "unknown dataset or file 'no-such-dataset'"),
        (["--strategy", "nope"], "unknown strategy 'nope'"),
        (["-p", "fast=abc"], "fast='abc' is not a valid int"),
        (["-p", "speed=3"], "unknown parameter 'speed'"),
        (["-p", "fast"], "must look like name=value"),
        (["--cash", "-5"], "--cash must be"),
        (["--leverage", "500"], "leverage 500 outside"),
        (["--from", "yesterday"], "is not an ISO date"),
        (["--from", "2030-01-01"], "fewer than 2 bars"),
        (["--slippage", "2"], "--slippage must be"),
        (["--fee-taker", "abc"], "is not a number"),
        (["--resample", "7x"], "unknown resample rule"),
        (["--data", "btcusd-daily", "--resample", "1h"], "whole multiple of the bar spacing"),
        (["--cash", "1e99"], "finite number below"),
        ("MALFORMED", "row 3: high"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    if args == "MALFORMED":
        args = ["--data", _malformed(tmp_path)]
    result = invoke(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert result.stdout == ""


def test_console_script_exit_code():
    proc = subprocess.run(
        [sys.executable, "-m", "methtrader.cli.main", "backtest", "--data", "missing.csv"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "missing.csv" in proc.stderr
