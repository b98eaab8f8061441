"""Pick a few thousand indices of a long series that keep each bucket's extremes, so a chart of
millions of bars draws fast and still shows every spike and the deepest drawdown."""

import numpy as np


def extreme_indices(
    series: list[np.ndarray], max_points: int = 5000, keep_max: tuple[bool, ...] | None = None
) -> np.ndarray:
    """Sorted unique indices holding, per bucket, the argmin of every series (and argmax where
    `keep_max` says so), plus the first and last index.

    All series share one timeline; at most about `max_points` indices are returned, and the global
    minimum of each series is always among them.
    """
    n = len(series[0]) if series else 0
    if n <= max_points:
        return np.arange(n)
    keep = keep_max if keep_max is not None else (True,) * len(series)
    per_bucket = len(series) + sum(keep)
    buckets = max(1, (max_points - 2) // per_bucket)
    width = -(-n // buckets)
    pad = buckets * width - n
    offsets = np.arange(buckets) * width
    picked = [np.array([0, n - 1])]
    for values, with_max in zip(series, keep, strict=True):
        grid = np.pad(np.asarray(values, dtype=float), (0, pad), mode="edge").reshape(buckets, -1)
        picked.append(offsets + grid.argmin(axis=1))
        if with_max:
            picked.append(offsets + grid.argmax(axis=1))
    return np.unique(np.minimum(np.concatenate(picked), n - 1))
