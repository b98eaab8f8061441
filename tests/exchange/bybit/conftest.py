"""Fixtures for the Bybit rate-limit tests: the local Bybit-like server (the Slack receiver is suite-wide)."""

from collections.abc import Iterator

import pytest

from .fakes import FakeBybitServer


@pytest.fixture(scope="module")
def fake_bybit() -> Iterator[FakeBybitServer]:
    """A Bybit-like server enforcing rolling 1 s windows per path (``reset(limits)`` per test)."""
    server = FakeBybitServer().start()
    try:
        yield server
    finally:
        server.stop()
