"""The guard's trading state: ACTIVE → REDUCING → HALTED. It tightens on its own and loosens
only through an explicit, recorded human action — never by a rule."""

from dataclasses import dataclass, field
from enum import IntEnum


class TradingState(IntEnum):
    """Ordered by severity, so `max` gives the tighter of two states."""

    ACTIVE = 0
    REDUCING = 1
    HALTED = 2


@dataclass(frozen=True, slots=True)
class StateChange:
    ts: int
    old: TradingState
    new: TradingState
    reason: str
    who: str = "guard"


@dataclass
class TradingStateMachine:
    """Holds the state and the full history of changes (who, why, when)."""

    state: TradingState = TradingState.ACTIVE
    reason: str = ""
    history: list[StateChange] = field(default_factory=list)

    def tighten(self, new: TradingState, reason: str, ts: int, who: str = "guard") -> bool:
        """Move to `new` if it is stricter than the current state; True when it changed."""
        if new <= self.state:
            return False
        self._set(new, reason, ts, who)
        return True

    def resume(self, reason: str, ts: int, who: str) -> bool:
        """The human path back to ACTIVE; requires a reason and a name."""
        if not reason.strip() or not who.strip():
            raise ValueError("resume needs a reason and who is resuming")
        if self.state is TradingState.ACTIVE:
            return False
        self._set(TradingState.ACTIVE, reason, ts, who)
        return True

    def _set(self, new: TradingState, reason: str, ts: int, who: str) -> None:
        self.history.append(StateChange(ts, self.state, new, reason, who))
        self.state = new
        self.reason = reason
