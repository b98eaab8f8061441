"""Strategy API and built-in strategies."""

from methtrader.strategies.base import Strategy, StrategyContext, StrategyError
from methtrader.strategies.breakout import Breakout
from methtrader.strategies.hold import Hold
from methtrader.strategies.indicators import SMA, Frame, Highest, Lowest
from methtrader.strategies.registry import BUILTINS, build_strategy, load_strategy_class
from methtrader.strategies.sma_cross import SmaCross

__all__ = [
    "BUILTINS",
    "SMA",
    "Breakout",
    "Frame",
    "Highest",
    "Hold",
    "Lowest",
    "SmaCross",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "build_strategy",
    "load_strategy_class",
]
