"""Typed strategy parameters, validation, and loading a user strategy from a file."""

from decimal import Decimal
from textwrap import dedent

import pytest

from methtrader.strategies import BUILTINS, SmaCross, StrategyError, build_strategy, load_strategy_class


def test_params_are_coerced_to_their_declared_types():
    strategy = build_strategy("sma_cross", {"fast": "5", "slow": "21", "qty": "0.25"})
    assert (strategy.fast, strategy.slow, strategy.qty) == (5, 21, Decimal("0.25"))
    assert isinstance(strategy.qty, Decimal)
    assert strategy.params() == {"fast": 5, "slow": 21, "qty": Decimal("0.25")}
    assert SmaCross.param_spec() == {"fast": (int, 10), "slow": (int, 30), "qty": (Decimal, Decimal("0.1"))}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fastt": "3"}, "unknown parameter 'fastt'"),
        ({"fast": "x"}, "fast='x' is not a valid int"),
        ({"qty": "nan"}, "qty='nan' is not a valid Decimal"),
        ({"fast": "30", "slow": "10"}, "fast < slow"),
        ({"qty": "-1"}, "qty > 0"),
    ],
)
def test_bad_params_raise_one_line_errors(params, message):
    with pytest.raises(StrategyError, match=message) as info:
        build_strategy("sma_cross", params)
    assert "\n" not in str(info.value)


def test_unknown_strategy():
    with pytest.raises(StrategyError, match="unknown strategy 'nope'"):
        load_strategy_class("nope")
    assert set(BUILTINS) == {"sma_cross", "breakout", "hold", "ml_signal"}


def test_strategy_from_file(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        dedent(
            """
            from methtrader.strategies import Strategy

            class Mine(Strategy):
                level: float = 1.5
                flag: bool = False
            """
        )
    )
    cls = load_strategy_class(f"{path}:Mine")
    strategy = cls(level="2.5", flag="yes")
    assert (strategy.level, strategy.flag) == (2.5, True)
    with pytest.raises(StrategyError, match="no Strategy subclass named 'Other'"):
        load_strategy_class(f"{path}:Other")
    with pytest.raises(StrategyError, match="not found"):
        load_strategy_class(f"{tmp_path / 'missing.py'}:Mine")
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    with pytest.raises(StrategyError, match="ModuleNotFoundError"):
        load_strategy_class(f"{broken}:X")
