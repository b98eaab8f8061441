"""Which code is running: package version and git commit (with a dirty flag). Metrics label
the process with it and the audit trail records it with every decision."""

import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from methtrader import __version__

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class BuildInfo:
    version: str
    commit: str  # full SHA, or "unknown" outside a git checkout without METHTRADER_COMMIT
    dirty: bool


@cache
def build_info() -> BuildInfo:
    """From METHTRADER_COMMIT (set by the container build) or the git checkout the package runs from."""
    pinned = os.environ.get("METHTRADER_COMMIT", "").strip()
    if pinned:
        return BuildInfo(__version__, pinned, False)
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return BuildInfo(__version__, "unknown", False)
    return BuildInfo(__version__, commit, dirty)


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()
