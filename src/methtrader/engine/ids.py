"""Trade ids: ours, unique per run, and valid Bybit `orderLinkId`s (<= 36 chars of [A-Za-z0-9_-])."""

import re
import uuid

_VALID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


class SequentialIds:
    """Deterministic ids for backtests, so a replay produces the same ledger."""

    def __init__(self, prefix: str = "bt") -> None:
        if not _VALID.match(prefix + "-0000000000"):
            raise ValueError(f"trade id prefix {prefix!r} would make invalid orderLinkIds")
        self.prefix = prefix
        self.seq = 0

    def __call__(self) -> str:
        self.seq += 1
        return f"{self.prefix}-{self.seq:010d}"


class RandomIds:
    """Collision-free ids for live trading across restarts and processes."""

    def __call__(self) -> str:
        return "mt-" + uuid.uuid4().hex
