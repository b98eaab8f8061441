"""Extremes per block of 64 steps: a stretch's min or max bounded with a couple of list lookups,
so quiet stretches of a backtest are ruled out without touching each bar."""

import numpy as np

BLOCK_BITS = 6


class BlockExtremes:
    """Lowest or highest value of each block; NaN counts as the most adverse value."""

    def __init__(self, values: np.ndarray, lowest: bool) -> None:
        filled = np.nan_to_num(values, nan=-np.inf if lowest else np.inf)
        pad = (-len(filled)) % (1 << BLOCK_BITS)
        edge = filled[-1] if len(filled) else 0.0
        padded = np.concatenate((filled, np.full(pad, edge))).reshape(-1, 1 << BLOCK_BITS)
        self.lowest = lowest
        self.blocks: list[float] = (padded.min(axis=1) if lowest else padded.max(axis=1)).tolist()

    def bound(self, a: int, b: int) -> float:
        """A value <= (lowest) or >= (highest) every element of [a, b), b > a."""
        covering = self.blocks[a >> BLOCK_BITS : ((b - 1) >> BLOCK_BITS) + 1]
        return min(covering) if self.lowest else max(covering)
