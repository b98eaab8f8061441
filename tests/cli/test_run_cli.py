"""`methtrader run`: a short paper session end to end, /metrics while it runs, and the one-line
errors of bad options and missing live credentials."""

import json
import subprocess
import sys
import time
import urllib.request

from typer.testing import CliRunner

from methtrader.cli.main import app
from methtrader.exchange.sim.runner import free_port

runner = CliRunner()


def test_paper_session_serves_metrics_and_trades(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "methtrader.cli.main", "run", "--bars", "40", "--speed", "20000", "--quiet",
         "--metrics-port", str(port), "-p", "fast=2", "-p", "slow=5"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    body = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
            if "methtrader_equity_usdt" in body:
                break
        except OSError:
            time.sleep(0.2)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "methtrader_guard_state" in body and "methtrader_var_usdt" in body
    assert "methtrader_bybit_rate_limit_utilisation" in body  # the governor's monitor, same endpoint
    assert "fills" in out and "risk guard" in out
    state = json.loads((tmp_path / "var" / "run-state.json").read_text())
    assert state["bars"] >= 40 and state["open_orders"] == [] and state["guard_state"] == "ACTIVE"


def test_bad_options_and_missing_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("METHTRADER_API_KEY", raising=False)
    monkeypatch.delenv("METHTRADER_API_SECRET", raising=False)
    cases = [
        (["run", "--mode", "backtest"], "--mode must be paper or live"),
        (["run", "--mode", "live", "--metrics-port", "0"], "needs METHTRADER_API_KEY"),
        (["run", "--mode", "live", "--network", "mainnet", "--metrics-port", "0"], "--i-mean-mainnet"),
        (["run", "--speed", "0", "--metrics-port", "0"], "--speed must be positive"),
        (["run", "-p", "fast=x", "--metrics-port", "0"], "fast='x' is not a valid int"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert (
            result.stderr.startswith("error: ")
            and message in result.stderr
            and result.stderr.count("\n") == 1
        )


def test_secret_files_are_read_and_never_echoed(tmp_path, monkeypatch):
    from methtrader.cli.run import secret

    key_file = tmp_path / "key"
    key_file.write_text("s3cr3t-key\n")
    monkeypatch.setenv("METHTRADER_API_KEY_FILE", str(key_file))
    assert secret("METHTRADER_API_KEY") == "s3cr3t-key"
    monkeypatch.setenv("METHTRADER_API_KEY_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("METHTRADER_API_SECRET", "x")
    result = runner.invoke(app, ["run", "--mode", "live", "--metrics-port", "0"])
    assert result.exit_code == 2 and "cannot read" in result.stderr and "s3cr3t" not in result.stderr
