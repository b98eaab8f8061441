"""Unix-millisecond timestamps as ISO-8601 UTC strings with a fixed width, so every CSV column and
report date parses with one format."""

import numpy as np


def iso_utc_array(ts_ms: np.ndarray) -> np.ndarray:
    """Format Unix ms as 'YYYY-MM-DDTHH:MM:SS.sssZ' in one vectorised call.

    numpy's formatter is exact on integer milliseconds and far faster than a datetime loop.
    """
    stamps = np.asarray(ts_ms, dtype=np.int64).astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(stamps, unit="ms"), "Z")


def iso_utc(ts_ms: int) -> str:
    """Format one Unix ms timestamp exactly as iso_utc_array does.

    Shares the array path so scalar and column values can never disagree.
    """
    return str(iso_utc_array(np.array([ts_ms]))[0])
