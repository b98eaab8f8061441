"""A Rich progress bar that only appears when the work turns out to take more than a second."""

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn


class LazyProgress:
    """Callable as `progress(done, total)`; shows a transient bar after `delay` seconds."""

    def __init__(self, description: str, delay: float = 1.0, enabled: bool = True) -> None:
        self.description = description
        self.delay = delay
        self.enabled = enabled
        self.started = time.monotonic()
        self._progress: Progress | None = None
        self._task = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            if time.monotonic() - self.started < self.delay or done >= total:
                return
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=total)
        self._progress.update(self._task, completed=done)

    def __enter__(self) -> "LazyProgress":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
