"""The simulator as its own process, the way a user starts it: `python -m methtrader.cli.sim`."""

import sys

SIM = [sys.executable, "-m", "methtrader.cli.sim"]
