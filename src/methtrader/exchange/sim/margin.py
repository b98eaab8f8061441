"""Margin arithmetic shared by the matching engine's per-step liquidation check and the engine's
vectorised scan. Written once with element-wise operations in a fixed order, it gives
bit-identical answers on floats and on numpy arrays, so both screen the same bars."""

from collections.abc import Sequence
from decimal import Decimal
from typing import TypeVar

import numpy as np

Num = TypeVar("Num", float, Decimal)

Held = Sequence[tuple[float, float, float]]
"""Per held symbol: (signed qty, signed entry cost, maintenance margin rate)."""


def adverse_price(qty: float, low: float | np.ndarray, high: float | np.ndarray):
    """The price that hurts a position most within a bar: the low for a long, else the high."""
    return low if qty > 0 else high


CANDIDATE_SLACK = 1e-9


def liquidation_candidate(wallet: float, held: Held, adverse: Sequence[float | np.ndarray]):
    """True (per bar, when given arrays) where equity at every position's adverse price may be
    below the maintenance margin at those prices: a float screen with a slack far above rounding
    error. Candidates are then decided exactly in Decimal; everything else is surely safe."""
    equity = wallet
    maintenance = 0.0
    scale = abs(wallet)
    for (qty, cost, mmr), price in zip(held, adverse, strict=True):
        equity = equity + (qty * price - cost)
        maintenance = maintenance + abs(price) * (abs(qty) * mmr)
        scale = scale + (abs(qty * price) + abs(cost))
    return equity < maintenance + scale * CANDIDATE_SLACK


def liquidation_price(
    wallet: Num, held: Sequence[tuple[Num, Num, Num]], adverse: Sequence[Num], k: int
) -> Num:
    """Price of position k at which equity equals maintenance margin, the others held at their
    adverse prices: solves W + Σ(q·p − c) = Σ|q|·p·mmr for p_k."""
    rest_equity = wallet
    rest_maintenance = 0 * wallet  # a zero of the same type
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
