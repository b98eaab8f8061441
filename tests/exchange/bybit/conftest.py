"""Fixtures for the Bybit rate-limit tests: the local Bybit-like server (the Slack receiver is suite-wide)."""

from collections.abc import Iterator

import pytest

from .fakes import FakeBybitServer, SlackReceiver


@pytest.fixture(scope="module")
def fake_bybit() -> Iterator[FakeBybitServer]:
    """A Bybit-like server enforcing rolling 1 s windows per path (``reset(limits)`` per test)."""
    server = FakeBybitServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    """A local stand-in for a Slack incoming webhook that records the POSTed JSON bodies."""
    receiver = SlackReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
