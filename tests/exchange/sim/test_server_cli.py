"""`methtrader sim serve|add-key` (through the sub-app `register` adds) and the replay clock."""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer
from pybit.unified_trading import HTTP
from typer.testing import CliRunner

from methtrader.cli.sim import register
from methtrader.data import resolve_bars
from methtrader.exchange.sim.runner import free_port
from methtrader.exchange.sim.venue import SimExchange


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test root"""

    register(app)
    return app


def test_server_cli_add_key(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(_app(), ["sim", "add-key", "--state-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0
    created = json.loads(result.stdout)
    assert len(created["api_key"]) == 18 and len(created["api_secret"]) == 36
    stored = json.loads((tmp_path / "keys.json").read_text())["keys"]
    assert [k["api_key"] for k in stored] == [created["api_key"]]
    plain = runner.invoke(_app(), ["sim", "add-key", "--state-dir", str(tmp_path)])
    assert plain.exit_code == 0 and "api_secret:" in plain.stdout


def test_server_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (
        ["sim", "serve", "--data", "no-such-dataset"],
        ["sim", "serve", "--speed", "-1"],
        ["sim", "serve", "--cash", "lots"],
        ["sim", "serve", "--port", "70000"],
    ):
        result = runner.invoke(_app(), args)
        assert result.exit_code == 2, args
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = runner.invoke(_app(), ["sim", "add-key", "--state-dir", str(a_file)])
    assert result.exit_code == 2 and result.stderr.startswith("error: ")


def test_server_cli_serve_subprocess(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "methtrader.cli.sim"]
    proc = subprocess.Popen(
        [*cmd, "serve", "--port", str(port), "--speed", "0", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = httpx.get(f"{url}/v5/market/time", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert reply.json()["retCode"] == 0
        started = proc.stderr.readline().decode()  # type: ignore[union-attr]
        assert started.startswith("methtrader sim: BTCUSDT from ")
        assert started.rstrip().endswith(f"instance {reply.headers['X-Sim-Instance']}")  # which venue
        out = subprocess.run(
            [*cmd, "add-key", "--state-dir", str(tmp_path), "--json"],
            capture_output=True,
            check=True,
            text=True,
        )
        created = json.loads(out.stdout)
        session = HTTP(api_key=created["api_key"], api_secret=created["api_secret"])
        session.endpoint = url
        wallet = session.get_wallet_balance(accountType="UNIFIED")
        assert wallet["result"]["list"][0]["totalEquity"] == "100000"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_server_replay_clock_advances_at_speed(tmp_path: Path) -> None:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    ex = SimExchange(series, instrument, state_dir=tmp_path, speed=3600 * 50, history=10)  # 50 bars/s

    async def main() -> int:
        await ex.start()
        await asyncio.sleep(0.5)
        await ex.stop()
        return ex.index

    index = asyncio.run(main())
    assert 15 <= index <= 40
    frozen = SimExchange(series, instrument, state_dir=tmp_path, speed=0, history=10)
    assert frozen.step() and frozen.index == 11
