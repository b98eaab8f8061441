"""Crash scenarios on the shipped 2008 / 2020 / 2022 data: in every leg the guard liquidates on
the first bar where VaR exceeds 5 % of equity, and the positions are exactly zero after it."""

import json
from decimal import Decimal

import numpy as np
import pytest
from typer.testing import CliRunner

from methtrader.cli.main import app
from methtrader.risk.guard import GuardConfig
from methtrader.risk.scenarios import SCENARIOS, run_leg
from methtrader.strategies import Hold


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_guard_liquidates_at_the_first_var_breach_and_ends_flat(scenario):
    for leg in SCENARIOS[scenario]:
        report = run_leg(
            leg, lambda leg: Hold(notional=Decimal(9_000)), Decimal(10_000), Decimal(1), GuardConfig()
        )
        breaches = np.flatnonzero(report.var_pct > 0.05)
        assert len(breaches), f"{leg.name}: VaR never exceeded 5%, the scenario proves nothing"
        first = int(breaches[0])
        assert report.fired_at == report.first_var_breach, leg.name
        assert report.var_pct_at_fire > 0.05
        position = report.position_guard
        assert position[first] != 0
        assert np.all(position[first + 1 :] == 0), f"{leg.name}: position left after the liquidation"
        assert report.guard.final_position_qty == 0
        assert report.guard.guard_liquidations == 1
        assert len(report.liquidation_fills) == 1
        # without the guard the same position rides the crash
        assert report.no_guard.final_position_qty > 0 or report.no_guard.exchange_liquidations > 0


def test_guard_cuts_the_2008_drawdown():
    (leg,) = SCENARIOS["gfc-2008"]
    report = run_leg(
        leg, lambda leg: Hold(notional=Decimal(9_000)), Decimal(10_000), Decimal(1), GuardConfig()
    )
    assert report.fired_at.startswith("2008-09")
    assert report.guard.max_drawdown < 0.15 < 0.40 < report.no_guard.max_drawdown


def test_stress_cli_json_and_outputs(tmp_path):
    result = CliRunner().invoke(
        app,
        ["risk", "stress", "--scenario", "covid-2020", "--leverage", "2", "--json", "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["final_position_qty"] == 0
    assert payload["liquidations"] == len(SCENARIOS["covid-2020"])
    assert payload["max_drawdown_with_guard"] < payload["max_drawdown_without_guard"]
    for leg in payload["legs"]:
        assert leg["guard_fired_at"] == leg["first_var_breach"]
        assert (tmp_path / f"{leg['name']}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        rows = (tmp_path / f"{leg['name']}.csv").read_text().splitlines()
        assert rows[0].startswith("time,close,equity_with_guard")


def test_stress_on_a_file_and_bad_inputs(tmp_path):
    path = tmp_path / "crash.csv"
    prices = 100 * np.exp(np.cumsum(np.r_[np.full(40, 0.001), np.full(30, -0.06)]))
    lines = ["date,open,high,low,close,volume"]
    for day, (o, c) in enumerate(zip(np.r_[100, prices[:-1]], prices, strict=True)):
        date = np.datetime64("2021-01-01") + day
        lines.append(f"{date},{o:.2f},{max(o, c) + 0.01:.2f},{min(o, c) - 0.01:.2f},{c:.2f},1000")
    path.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    ok = runner.invoke(app, ["risk", "stress", "--scenario", str(path), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["final_position_qty"] == 0
    for args, message in [
        (["--scenario", "covid-2021"], "unknown scenario or file"),
        (["--scenario", "gfc-2008", "--var-limit", "5"], "--var-limit must be a fraction"),
        (["--scenario", "gfc-2008", "--strategy", "nope"], "unknown strategy"),
        (["--scenario", "gfc-2008", "--leverage", "0"], "must be positive"),
    ]:
        bad = runner.invoke(app, ["risk", "stress", *args])
        assert bad.exit_code == 2
        assert bad.stderr.startswith("error: ") and message in bad.stderr and bad.stderr.count("\n") == 1


def test_var_cli_side_by_side(tmp_path):
    book = tmp_path / "book.json"
    book.write_text(json.dumps({"equity": 50000, "positions": [
        {"symbol": "BTCUSDT", "qty": "0.5", "data": "btcusd-daily"},
        {"symbol": "SPXUSDT", "qty": "-2", "data": "spx-daily"},
    ]}))  # fmt: skip
    result = CliRunner().invoke(app, ["risk", "var", str(book), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["methods"]
    assert {r["method"] for r in rows} == {"historical", "parametric", "cornish_fisher", "ewma", "fhs"}
    assert all(r["es"] >= r["var"] > 0 for r in rows)
    human = CliRunner().invoke(app, ["risk", "var", str(book)])
    assert "cornish_fisher" in human.stdout
    book.write_text("{not json")
    bad = CliRunner().invoke(app, ["risk", "var", str(book)])
    assert bad.exit_code == 2 and "not valid JSON" in bad.stderr
    missing = CliRunner().invoke(app, ["risk", "var", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "file not found" in missing.stderr


def test_var_of_the_running_account_on_the_simulator(tmp_path, monkeypatch):
    """`risk var --account`: positions, equity and klines come from the exchange (our simulator,
    through the real ccxt adapter); a flat account has no VaR; a wrong key is one line, exit 2."""
    import asyncio
    from decimal import Decimal

    from methtrader.data import resolve_bars
    from methtrader.exchange.bybit.adapter import BybitAdapter, VenueSettings, make_client
    from methtrader.exchange.sim.runner import BackgroundServer
    from methtrader.exchange.sim.venue import SimExchange
    from methtrader.model import Order, OrderType, Side

    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    exchange = SimExchange(series, instrument, state_dir=tmp_path, speed=0, cash=Decimal(100_000))
    with BackgroundServer(exchange) as server:
        key, secret, _ = exchange.add_key()
        monkeypatch.setenv("METHTRADER_API_KEY", key)
        monkeypatch.setenv("METHTRADER_API_SECRET", secret)
        args = ["risk", "var", "--account", "--network", "sim", "--sim-url", server.url, "--json"]
        flat = CliRunner().invoke(app, args)
        assert flat.exit_code == 0, flat.output
        assert json.loads(flat.stdout)["positions"] == [] and json.loads(flat.stdout)["methods"] == []

        async def buy() -> None:
            venue = VenueSettings(network="sim", sim_url=server.url)
            adapter = BybitAdapter(make_client(venue, key, secret), venue)
            try:
                await adapter.load_markets()
                await adapter.create_order(
                    Order("mt-var-1", "BTCUSDT", Side.BUY, Decimal("0.5"), OrderType.MARKET)
                )
            finally:
                await adapter.close()

        asyncio.run(buy())
        exchange.step()  # the market order fills on the next bar
        held = CliRunner().invoke(app, args)
        assert held.exit_code == 0, held.output
        report = json.loads(held.stdout)
        assert report["positions"] == [{"symbol": "BTCUSDT", "qty": 0.5}]
        assert 99_000 < report["equity"] < 101_000
        assert {r["method"] for r in report["methods"]} == {
            "historical",
            "parametric",
            "cornish_fisher",
            "ewma",
            "fhs",
        }
        assert all(r["es"] >= r["var"] > 0 for r in report["methods"])
        monkeypatch.setenv("METHTRADER_API_SECRET", "wrong")
        refused = CliRunner().invoke(app, args)
        assert refused.exit_code == 2 and "refused" in refused.stderr and refused.stderr.count("\n") == 1
