"""What a real `methtrader run` serves on /metrics: one short paper session, scraped until it exits."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

SESSION_ARGS = ("run", "--bars", "40", "--speed", "360000", "--quiet")
SESSION_TIMEOUT_S = 120.0

# Sample names each family type can produce (counters are parsed without their _total).
_SAMPLES: dict[str, Callable[[str], tuple[str, ...]]] = {
    "counter": lambda n: (f"{n}_total", f"{n}_created"),
    "histogram": lambda n: (f"{n}_bucket", f"{n}_count", f"{n}_sum", f"{n}_created"),
    "gaugehistogram": lambda n: (f"{n}_bucket", f"{n}_gcount", f"{n}_gsum"),
    "summary": lambda n: (n, f"{n}_count", f"{n}_sum", f"{n}_created"),
    "info": lambda n: (f"{n}_info",),
}


class SessionError(RuntimeError):
    """The paper session failed or never served /metrics."""


@dataclass(frozen=True)
class Exposition:
    """The last /metrics body a paper session served, and every sample name it declares."""

    text: str
    names: frozenset[str]


def exposed_names(text: str) -> frozenset[str]:
    """Sample names of a text exposition, including those of declared families with no sample yet
    (a labelled metric whose first child has not been created)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(_SAMPLES.get(family.type, lambda n: (n,))(family.name))
    return frozenset(names)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> list[str]:
    script = Path(sys.executable).with_name("methtrader")
    return [str(script)] if script.exists() else [sys.executable, "-m", "methtrader.cli.main"]


def scrape_paper_session(workdir: Path) -> Exposition:
    """Run `methtrader run --bars 40` (paper) in `workdir`; scrape /metrics until it exits."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METHTRADER_")}  # no live keys, no Redis
    with open(workdir / "stdout", "w") as out, open(workdir / "stderr", "w") as err:
        proc = subprocess.Popen(
            [*_command(), *SESSION_ARGS, "--metrics-port", str(port)],
            cwd=workdir, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        body = ""
        deadline = time.monotonic() + SESSION_TIMEOUT_S
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                        body = response.read().decode()
                except OSError:
                    pass
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    stderr = (workdir / "stderr").read_text()[-2000:]
    if proc.returncode != 0:
        raise SessionError(f"`methtrader {' '.join(SESSION_ARGS)}` exited {proc.returncode}:\n{stderr}")
    if not body:
        raise SessionError(f"`methtrader run` never answered on /metrics (port {port}):\n{stderr}")
    return Exposition(body, exposed_names(body))
