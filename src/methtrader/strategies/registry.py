"""Find a strategy class by built-in name or as `path/to/file.py:ClassName`."""

import importlib.util
import sys
from pathlib import Path

from methtrader.strategies.base import Strategy, StrategyError
from methtrader.strategies.breakout import Breakout
from methtrader.strategies.hold import Hold
from methtrader.strategies.ml_signal import MlSignal
from methtrader.strategies.sma_cross import SmaCross

BUILTINS: dict[str, type[Strategy]] = {cls.name: cls for cls in (SmaCross, Breakout, Hold, MlSignal)}


def load_strategy_class(spec: str) -> type[Strategy]:
    """`sma_cross` or `my_strats.py:MyStrategy`; StrategyError with one line otherwise."""
    if spec in BUILTINS:
        return BUILTINS[spec]
    if ":" not in spec:
        known = ", ".join(sorted(BUILTINS))
        raise StrategyError(f"unknown strategy {spec!r} (built-ins: {known}; or FILE.py:CLASS)")
    file_part, _, class_name = spec.rpartition(":")
    path = Path(file_part)
    if not path.is_file():
        raise StrategyError(f"strategy file not found: {path}")
    module_name = f"methtrader_user_{path.stem}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise StrategyError(f"cannot import strategy file {path}")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report any import error in one line
        raise StrategyError(f"{path}: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyError(f"{path} has no Strategy subclass named {class_name!r}")
    return cls


def build_strategy(spec: str, params: dict[str, str]) -> Strategy:
    return load_strategy_class(spec)(**params)
