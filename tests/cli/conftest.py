"""Fixtures of the command-line tests that run the trader against a simulator in its own process."""

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from methtrader.exchange.sim.runner import free_port
from support.sim_process import SIM


@pytest.fixture
def simulator(tmp_path: Path, request: pytest.FixtureRequest):
    """`methtrader sim serve` in its own process (extra options: the test's `sim_options`), and a key."""
    state = tmp_path / "sim"
    port = free_port()
    callspec = getattr(request.node, "callspec", None)
    options = callspec.params.get("sim_options", ()) if callspec is not None else ()
    proc = subprocess.Popen(
        [*SIM, "serve", "--port", str(port), "--speed", "7200", "--state-dir", str(state), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/v5/market/time", timeout=1)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.1)
    created = json.loads(
        subprocess.run([*SIM, "add-key", "--state-dir", str(state), "--json"], capture_output=True,
                       check=True, text=True).stdout
    )  # fmt: skip
    try:
        yield url, created["api_key"], created["api_secret"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
