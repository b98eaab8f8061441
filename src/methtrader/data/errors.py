"""The one exception raised for bad or missing market data files and dataset names.

Messages are a single line naming the file (and row) so a user can open the file and fix it.
"""

from os import PathLike


class DataError(ValueError):
    """Market data could not be found or turned into valid bars; the message is one line.

    With a source the message is `"<file>: row <N>: <reason>"` (CSV: physical line number, the
    header being line 1; Parquet: 1-based row index) or `"<file>: <reason>"` for the whole file.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str | PathLike[str] | None = None,
        row: int | None = None,
    ) -> None:
        self.reason = " ".join(str(reason).split())
        self.source = None if source is None else str(source)
        self.row = row
        parts = [p for p in (self.source, None if row is None else f"row {row}") if p]
        super().__init__(": ".join([*parts, self.reason]))
