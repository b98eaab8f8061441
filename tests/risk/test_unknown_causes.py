"""Unclear states have causes (the ledger, each stream, the control channel); the guard returns to
ACTIVE only when every one of them is resolved, so a stream coming back never lifts the block a
database outage still needs (and the other way round)."""

from methtrader.risk.guard import GuardConfig, RiskGuard
from methtrader.risk.state import TradingState


def test_active_again_only_when_every_cause_is_resolved():
    guard = RiskGuard(GuardConfig())
    guard.unknown_state("database: connection refused", 1)
    guard.unknown_state("private stream down", 2, cause="stream:private")
    assert guard.state.state is TradingState.REDUCING
    assert guard.clear_unknown_state("private stream back, reconciled", 3, cause="stream:private") is False
    assert guard.state.state is TradingState.REDUCING  # the database is still down
    assert guard.clear_unknown_state("database back, journal replayed", 4) is True
    assert guard.state.state is TradingState.ACTIVE and guard.unknowns == {}


def test_a_cause_cleared_twice_or_never_raised_changes_nothing():
    guard = RiskGuard(GuardConfig())
    assert guard.clear_unknown_state("nothing was wrong", 1, cause="stream:public") is False
    guard.unknown_state("public stream down", 2, cause="stream:public")
    guard.state.tighten(TradingState.HALTED, "brake: incident (by ops)", 3)
    assert guard.clear_unknown_state("public stream back", 4, cause="stream:public") is False
    assert guard.state.state is TradingState.HALTED  # a brake is never lifted by a recovery
