"""Issue 10.4: with the private WebSocket cut (the fault proxy resets it and every reconnect, REST
untouched), the session is blind to its fills: the guard goes REDUCING at once and sends no order
that adds exposure; when the stream is back and the reconcile after it is done, ACTIVE again by
itself. Before, the guard stayed ACTIVE and the session kept placing new orders."""

import json
import os
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

from methtrader.chaos import FaultProxy

RUN = [sys.executable, "-m", "methtrader.cli.main", "run", "--quiet", "--metrics-port", "0",
       "-p", "fast=2", "-p", "slow=5", "--bars", "400"]  # fmt: skip
CUT_S = 6.0


class Lines:
    """The session's JSON log lines as they arrive, each stamped on this host's monotonic clock."""

    def __init__(self, stream) -> None:
        self.seen: list[tuple[float, dict]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            try:
                self.seen.append((time.monotonic(), json.loads(raw)))
            except ValueError:
                continue

    def first(self, predicate, timeout: float, after: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.seen):
                if at >= after and predicate(line):
                    return at
            time.sleep(0.02)
        raise AssertionError(f"not seen within {timeout} s; last lines: {[x for _, x in self.seen[-8:]]}")


def guard_event(kind: str, text: str):
    return lambda line: (
        line.get("event") == "risk guard event"
        and line.get("kind") == kind
        and text in str(line.get("detail"))
    )


def test_a_cut_private_stream_blocks_new_exposure_until_it_is_back_and_reconciled(
    tmp_path, simulator, log_sink
):
    url, key, secret = simulator
    upstream = urlparse(url)
    env = {**os.environ, "METHTRADER_API_KEY": key, "METHTRADER_API_SECRET": secret}
    with FaultProxy(upstream.hostname, upstream.port) as proxy:
        trader = subprocess.Popen(
            [*RUN, "--sim-url", proxy.url], cwd=tmp_path, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        lines = Lines(trader.stdout)
        try:
            proxy.wait_connected(kind="websocket", path_prefix="/v5/private", timeout=30)
            lines.first(lambda line: line.get("event") == "order placed", timeout=30)  # trading
            proxy.cut(kind="websocket", path_prefix="/v5/private", duration=CUT_S)
            cut_at = proxy.timeline[-1].monotonic
            reducing_at = lines.first(guard_event("unknown_state", "private stream down"), 15, after=cut_at)
            back = guard_event("unknown_state_cleared", "private stream back")
            active_at = lines.first(back, 30, after=reducing_at)
            healed_at = next(e.monotonic for e in proxy.timeline if e.action == "stop")
        finally:
            trader.terminate()
            trader.wait(timeout=30)
            log_sink("\n".join(json.dumps(line) for _, line in lines.seen))
    placed = [(at, line) for at, line in lines.seen if line.get("event") == "order placed"]
    blind = [line for at, line in placed if reducing_at < at < active_at and not line.get("reduce_only")]
    assert blind == []  # no new exposure while blind
    assert reducing_at - cut_at < 3.0, f"fault to REDUCING: {reducing_at - cut_at:.2f} s"
    assert active_at > healed_at and active_at - healed_at < 15.0, (
        f"back to ACTIVE: {active_at - healed_at:.2f} s"
    )
    print(f"fault to REDUCING {reducing_at - cut_at:.2f} s, recovery to ACTIVE {active_at - healed_at:.2f} s")
