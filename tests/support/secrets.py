"""Distinctive test secrets, and the session-wide record of every log line the suite produces.
At the end of the session every recorded line is grepped for these secrets; one hit fails the run."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

API_SECRET = "TESTSECRETapi-7c1e0f5b9a2d4e6f8a0b"
WEBHOOK_TOKEN = "TESTSECRETwebhook-3b8d2a6f1e9c4d7a"
WEBHOOK_PATH = f"/services/T000/B000/{WEBHOOK_TOKEN}"
DB_PASSWORD = "TESTSECRETdbpw-5e2c9a1f7b3d"
SECRETS: dict[str, str] = {
    "API_SECRET": API_SECRET,
    "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    "DB_PASSWORD": DB_PASSWORD,
}


def webhook_url(port: int) -> str:
    """A Slack-style webhook URL on a local port whose path carries the test webhook secret."""
    return f"http://127.0.0.1:{port}{WEBHOOK_PATH}"


def database_url(port: int = 5432) -> str:
    """A PostgreSQL URL whose password is the test database secret."""
    return f"postgresql://trader:{DB_PASSWORD}@127.0.0.1:{port}/ledger"


def _current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)").rsplit(" ", 1)[0]


class _Recorder:
    """Appends lines to one file, with a ``# test: <nodeid>`` marker whenever the test changes.
    Read back through its own handle, so a tmp-dir clean-up by a concurrent pytest cannot hide a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._last_test: str | None = None
        self._file = path.open("w+", encoding="utf-8")

    def write(self, text: str, origin: str) -> None:
        test = _current_test()
        with self._lock:
            if self._file.closed:
                return
            if test != self._last_test or origin != "log":
                self._file.write(f"# test: {test} ({origin})\n")
                self._last_test = test if origin == "log" else None
            self._file.write(text if text.endswith("\n") else text + "\n")

    def read(self) -> list[str]:
        with self._lock:
            if self._file.closed:
                return []
            self._file.flush()
            self._file.seek(0)
            lines = self._file.readlines()
            self._file.seek(0, os.SEEK_END)
            return lines

    def close(self) -> None:
        with self._lock:
            self._file.close()


class SessionLogHandler(logging.Handler):
    """A root handler for the whole session: every record, rendered by ops.logs' JSON formatter."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__(logging.DEBUG)
        from methtrader.ops.logs import make_formatter

        self.recorder = recorder
        self.setFormatter(make_formatter("tests", env="test"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.recorder.write(self.format(record), "log")
        except Exception:
            self.handleError(record)


_recorders: list[_Recorder] = []


def start_recording(directory: Path) -> SessionLogHandler:
    """Open the session's log record under ``directory``; returns the handler to put on the root logger."""
    directory.mkdir(parents=True, exist_ok=True)
    recorder = _Recorder(directory / "session-log.jsonl")
    sink = _Recorder(directory / "session-sink.txt")
    _recorders[:] = [recorder, sink]
    return SessionLogHandler(recorder)


def log_sink(text: str, origin: str = "subprocess") -> None:
    """Add output a test captured (a subprocess's stdout or stderr) to the lines grepped for secrets."""
    if len(_recorders) == 2 and text:
        _recorders[1].write(text, origin)


def recorded() -> list[tuple[str, list[str]]]:
    """Every line recorded so far, per file: the session's log records, then the sunk outputs."""
    return [(str(r.path), r.read()) for r in _recorders]


def stop_recording() -> None:
    for recorder in _recorders:
        recorder.close()


@dataclass(frozen=True)
class Leak:
    secret: str
    where: str
    line_number: int
    test: str
    excerpt: str

    def __str__(self) -> str:
        where = f"{self.where}:{self.line_number}"
        return f"secret {self.secret} leaked in {where} (test {self.test}): {self.excerpt}"


def find_leaks(sources: Iterable[tuple[str, Iterable[str]]], secrets: dict[str, str] = SECRETS) -> list[Leak]:
    """Every line of ``sources`` ((where, lines) pairs) that contains one of ``secrets``; the excerpt
    masks the secret itself, and ``# test:`` markers say which test wrote the line."""
    leaks: list[Leak] = []
    for where, lines in sources:
        test = "(unknown)"
        for number, line in enumerate(lines, 1):
            if line.startswith("# test: "):
                test = line[len("# test: ") :].strip()
                continue
            for name, secret in secrets.items():
                if secret in line:
                    excerpt = line.strip().replace(secret, f"<{name}>")[:300]
                    leaks.append(Leak(name, where, number, test, excerpt))
    return leaks
