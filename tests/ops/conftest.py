"""Fixtures for the ops tests: a local Slack receiver and a JSON log stream read back as objects."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from methtrader.ops.logs import configure_logging
from support.slack import SlackReceiver


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    """A local stand-in for a Slack incoming webhook that records the POSTed JSON bodies."""
    receiver = SlackReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


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
