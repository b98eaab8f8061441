"""The seam where the risk guard plugs in: every order passes `check` before it leaves."""

from typing import Protocol

from methtrader.model import Fill, Order


class RiskHook(Protocol):
    def check(self, order: Order) -> str | None:
        """Return None to let the order through, or a reason code to deny it."""
        ...

    def on_fill(self, fill: Fill) -> None: ...

    def on_step(self, ts: int) -> None: ...


class NoRisk:
    """Lets everything through; the risk issue replaces it with the guard."""

    def check(self, order: Order) -> str | None:
        return None

    def on_fill(self, fill: Fill) -> None:
        return None

    def on_step(self, ts: int) -> None:
        return None
