"""`ml_signal`: trades a registered MLflow model in a backtest through the CLI, deterministically;
the live path (a rolling window of bars) gives the backtest's probabilities; each decision exposes
its features, raw window and model for the audit trail; a paper session trades it too."""

import asyncio
import json
from decimal import Decimal

import numpy as np
import pytest
from typer.testing import CliRunner

from methtrader.cli.main import app
from methtrader.data import resolve_bars
from methtrader.ml.blobs import BlobStore, canonical_bytes
from methtrader.ml.features import build_features, feature_matrix, lookback
from methtrader.model import Side
from methtrader.strategies import StrategyError, build_strategy
from methtrader.strategies.indicators import StreamFrames
from methtrader.strategies.ml_signal import MlSignal
from support.ml import tracking_uri, train

runner = CliRunner()
WINDOW = ("--data", "btcusdt-1h-2019-2020", "--from", "2019-04-01", "--to", "2019-06-01")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    uri = tracking_uri(folder)
    return {"uri": uri, **train(uri)}


def backtest(model, *args: str) -> dict:
    result = runner.invoke(
        app,
        [
            "backtest",
            *WINDOW,
            "--strategy",
            "ml_signal",
            "-p",
            f"tracking_uri={model['uri']}",
            *args,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_backtest_trades_the_registered_model_deterministically(model):
    first = backtest(model, "-p", f"model={model['model_uri']}", "-p", "qty=0.01")
    assert first["strategy"] == "ml_signal" and first["trades"] > 10 and first["fees_paid"] > 0
    again = backtest(model, "-p", f"model={model['model_uri']}", "-p", "qty=0.01")
    assert again == first
    by_run = backtest(model, "-p", f"model={model['run_model_uri']}", "-p", "qty=0.01")
    assert by_run == first
    wide = backtest(model, "-p", f"model={model['model_uri']}", "-p", "qty=0.01", "-p", "threshold=0.99")
    assert wide["trades"] < first["trades"]  # almost always flat


def test_tracking_uri_from_the_environment(model, monkeypatch):
    monkeypatch.setenv("METHTRADER_MLFLOW_TRACKING_URI", model["uri"])
    strategy = build_strategy("ml_signal", {"model": model["model_uri"]})
    assert strategy.loaded.run_id == model["run_id"] and strategy.loaded.version == "1"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/no-such-model/1", "unknown model 'models:/no-such-model/1'"),
        ("models:/methtrader-logistic/7", "unknown model 'models:/methtrader-logistic/7'"),
        ("runs:/0123456789abcdef/model", "unknown model 'runs:/0123456789abcdef/model'"),
        ("s3://bucket/model", "must be models:/NAME/VERSION or runs:/RUN_ID/model"),
        ("", "ml_signal needs -p model="),
    ],
)
def test_unknown_model_is_one_line_exit_2(model, uri, message):
    result = runner.invoke(
        app,
        ["backtest", *WINDOW, "-s", "ml_signal", "-p", f"model={uri}", "-p", f"tracking_uri={model['uri']}"],
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreachable_mlflow_is_one_line_exit_2():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    result = runner.invoke(
        app, ["backtest", *WINDOW, "-s", "ml_signal", "-p", "model=models:/m/1", "-p", f"tracking_uri={uri}"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: MLflow tracking server {uri} is unreachable: ConnectError"


def test_bad_threshold(model):
    with pytest.raises(StrategyError, match="threshold"):
        MlSignal(model=model["model_uri"], tracking_uri=model["uri"], threshold=0.4)


def test_live_window_gives_the_backtest_probabilities_and_decision_context(model):
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    series = series.take(slice(2000, 2300))
    strategy = MlSignal(model=model["model_uri"], tracking_uri=model["uri"])
    tick = float(instrument.tick_size)
    vector = strategy.indicators()["p_up"].vector(series, tick)
    frames = StreamFrames(strategy.indicators(), tick)
    live = np.array([frames.update(series.bar(i)).p_up for i in range(len(series))])
    np.testing.assert_allclose(live, vector, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isnan(vector[: lookback(strategy.feature_names)]).all() and not np.isnan(vector[-250:]).any()

    context = strategy.decision_context(series.symbol)  # live: the last bar's window
    assert context is not None and context.ts == int(series.ts[-1])
    features = build_features(series, strategy.feature_names)[-1]
    assert list(context.features.values()) == features.tolist()
    assert len(context.window["close"]) == lookback(strategy.feature_names) + 1
    assert context.window["close"].tolist() == series.close[-len(context.window["close"]) :].tolist()
    assert context.model_uri == model["model_uri"] and context.run_id == model["run_id"]
    assert context.model_version == "1" and context.probability == pytest.approx(vector[-1], abs=1e-12)


def test_each_order_carries_its_decision_context(model, tmp_path):
    from methtrader.engine.backtest import BacktestRunner

    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    series = series.take(slice(2000, 2200))
    strategy = MlSignal(model=model["model_uri"], tracking_uri=model["uri"], qty=Decimal("0.01"))
    contexts = []
    original = strategy._order

    def recording(*args, **kwargs):
        order = original(*args, **kwargs)
        contexts.append((order, strategy.last_decision))
        return order

    strategy._order = recording
    BacktestRunner(strategy, [(series, instrument)]).run()
    assert len(contexts) > 5
    store = BlobStore(tmp_path / "blobs")
    names = strategy.feature_names
    for order, context in contexts:
        assert context is not None and context.symbol == "BTCUSDT"
        assert context.window["ts"][-1] == context.ts and len(context.window["ts"]) == lookback(names) + 1
        # the stored window reproduces the stored features exactly
        assert feature_matrix(context.window, names)[-1].tolist() == list(context.features.values())
        # a buy means the model was not bearish at that bar, a sell that it was not bullish
        if order.side is Side.BUY:
            assert context.probability >= 1 - strategy.threshold
        else:
            assert context.probability <= strategy.threshold
        sha = store.put(context.blob())
        assert canonical_bytes(store.get(sha)) == canonical_bytes(context.blob())


def test_paper_session_trades_the_model(model, tmp_path):
    from methtrader.engine.live import LiveRunner
    from methtrader.exchange.bybit.adapter import BybitAdapter, VenueSettings, make_client
    from methtrader.exchange.sim.runner import BackgroundServer
    from methtrader.exchange.sim.venue import SimExchange

    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    series = series.take(slice(2000, 2200))
    exchange = SimExchange(
        series, instrument, state_dir=tmp_path, speed=20_000, cash=Decimal(100_000), history=40
    )
    strategy = MlSignal(
        model=model["model_uri"], tracking_uri=model["uri"], qty=Decimal("0.01"), threshold=0.5
    )
    with BackgroundServer(exchange) as server:
        key, secret, _ = exchange.add_key()
        venue = VenueSettings(network="sim", sim_url=server.url)

        async def main():
            adapter = BybitAdapter(make_client(venue, key, secret), venue)
            live = LiveRunner(strategy, adapter, instrument, Decimal(100_000), poll_seconds=0.05)
            try:
                return await asyncio.wait_for(live.run(max_bars=15, warmup=25), timeout=60)
            finally:
                await adapter.close()

        status = asyncio.run(main())
    assert not status.errors, status.errors
    assert status.fills >= 1
    decision = strategy.last_decision
    assert decision is not None and decision.run_id == model["run_id"]
    assert len(decision.window["close"]) == lookback(strategy.feature_names) + 1
