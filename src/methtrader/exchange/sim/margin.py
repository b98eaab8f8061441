"""Float margin arithmetic shared by the matching engine's per-step liquidation check and the
engine's vectorised scan. Written once with element-wise operations in a fixed order, it gives
bit-identical answers on floats and on numpy arrays, so both find the same liquidation bar."""

from collections.abc import Sequence

import numpy as np

Held = Sequence[tuple[float, float, float]]
"""Per held symbol: (signed qty, signed entry cost, maintenance margin rate)."""


def adverse_price(qty: float, low: float | np.ndarray, high: float | np.ndarray):
    """The price that hurts a position most within a bar: the low for a long, else the high."""
    return low if qty > 0 else high


def liquidation_breach(wallet: float, held: Held, adverse: Sequence[float | np.ndarray]):
    """True (per bar, when given arrays) where equity at every position's adverse price falls
    below the maintenance margin at those prices."""
    equity = wallet
    maintenance = 0.0
    for (qty, cost, mmr), price in zip(held, adverse, strict=True):
        equity = equity + (qty * price - cost)
        maintenance = maintenance + abs(price) * (abs(qty) * mmr)
    return equity < maintenance


def liquidation_price(wallet: float, held: Held, adverse: Sequence[float], k: int) -> float:
    """Price of position k at which equity equals maintenance margin, the others held at their
    adverse prices: solves W + Σ(q·p − c) = Σ|q|·p·mmr for p_k."""
    rest_equity = wallet
    rest_maintenance = 0.0
    for j, ((qty, cost, mmr), price) in enumerate(zip(held, adverse, strict=True)):
        if j != k:
            rest_equity += qty * price - cost
            rest_maintenance += abs(price) * abs(qty) * mmr
    qty, cost, mmr = held[k]
    return (cost - rest_equity + rest_maintenance) / (qty - abs(qty) * mmr)


def clear_of_trigger(qty: float, trigger: float, extreme: float) -> bool:
    """True when a single position's worst price stays so far on the safe side of its trigger
    that float rounding cannot matter; the exact check is needed only otherwise."""
    slack = abs(trigger) * 1e-9
    return extreme > trigger + slack if qty > 0 else extreme < trigger - slack


def liquidation_trigger(wallet: float, qty: float, cost: float, mmr: float) -> float:
    """For a single position: the price at which equity meets maintenance margin
    (a long is liquidated at or below it, a short at or above)."""
    return (cost - wallet) / (qty - abs(qty) * mmr)
