"""Where the deployment files are, and running the real tools on them."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RUNBOOK = REPO / "docs" / "RUNBOOK.md"
RUNBOOK_URL = "https://github.com/methtrader/methtrader/blob/main/docs/RUNBOOK.md"

# The only log labels (Loki: every label-value combination is a stream).
LOG_LABELS = frozenset({"app", "env", "component", "level"})


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root; stdout and stderr captured as text."""
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
