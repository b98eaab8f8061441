"""Fixtures for the ops tests: a JSON log stream read back as objects (the Slack receiver is suite-wide)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from methtrader.ops.logs import configure_logging


class JsonLog:
    """The stream configure_logging writes to, read back line by line as JSON objects."""

    def __init__(self, component: str = "engine", **kwargs: Any) -> None:
        self.buffer = io.StringIO()
        self.handler = configure_logging(component, stream=self.buffer, **kwargs)

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def json_log() -> JsonLog:
    """Logging configured for component ``engine`` at INFO, into a buffer (undone after the test)."""
    return JsonLog()
