"""Fixtures of the deployment tests: the real Prometheus tools, and what a real `methtrader run`
serves on /metrics (one short paper session per test session)."""

import shutil

import pytest

from deploy.exposition import Exposition, SessionError, scrape_paper_session


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "live_metrics: needs the /metrics of a real `methtrader run` (a ~10 s paper session)"
    )


@pytest.fixture(scope="session")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Exposition:
    """/metrics of `methtrader run --bars 40 --speed 360000 --quiet`, run in a temp dir."""
    try:
        return scrape_paper_session(tmp_path_factory.mktemp("paper-session"))
    except SessionError as exc:
        pytest.fail(str(exc), pytrace=False)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: `apt-get install -y {package}` (.ci/run installs it)", pytrace=False
        )
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian package prometheus); fails, never skips, when it is missing."""
    return _tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    """Path of amtool (Debian package prometheus-alertmanager); fails, never skips, when it is missing."""
    return _tool("amtool", "prometheus-alertmanager")
