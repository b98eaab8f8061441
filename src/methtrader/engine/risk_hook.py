"""The seam where the risk guard plugs in: every order passes `check` before it leaves, and the
hook sees every fill and every bar. `NoRisk` is the pass-through default."""

from typing import TYPE_CHECKING, Protocol

import numpy as np

from methtrader.model import Fill, Order

if TYPE_CHECKING:
    from methtrader.engine.engine import Engine


class RiskHook(Protocol):
    def bind(self, engine: "Engine") -> None: ...

    def prepare(self, timeline: np.ndarray, closes: dict[str, np.ndarray], bar_ms: int) -> None:
        """Market data on the run's timeline, before the first bar."""
        ...

    def check(self, order: Order) -> str | None:
        """Return None to let the order through, or a reason code to deny it."""
        ...

    def on_fill(self, fill: Fill) -> None: ...

    def on_step(self, ts: int, step: int | None = None) -> None:
        """After each bar's fills, before the strategy sees the bar (`step`: its timeline index)."""
        ...

    def busy(self) -> bool:
        """True when the hook needs the very next bar (e.g. a liquidation is working)."""
        ...

    def scan(self, a: int, b: int) -> int | None:
        """First timeline step in [a, b) where the hook would act with positions unchanged."""
        ...

    def absorb(self, a: int, b: int) -> None:
        """Steps [a, b) were skipped by a vectorised backtest: account for them."""
        ...


class NoRisk:
    """Lets everything through."""

    def bind(self, engine: "Engine") -> None:
        return None

    def prepare(self, timeline: np.ndarray, closes: dict[str, np.ndarray], bar_ms: int) -> None:
        return None

    def check(self, order: Order) -> str | None:
        return None

    def on_fill(self, fill: Fill) -> None:
        return None

    def on_step(self, ts: int, step: int | None = None) -> None:
        return None

    def busy(self) -> bool:
        return False

    def scan(self, a: int, b: int) -> int | None:
        return None

    def absorb(self, a: int, b: int) -> None:
        return None
