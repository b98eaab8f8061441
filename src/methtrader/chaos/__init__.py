"""Fault injection for chaos and fail-closed tests: a loopback TCP proxy that adds latency, resets,
black-holes, slow closes and bandwidth limits between the trader and an exchange (or any TCP server)."""

from methtrader.chaos.proxy import (
    OTHER,
    REST,
    WEBSOCKET,
    ActiveFault,
    Bandwidth,
    BlackHole,
    ConnInfo,
    Fault,
    FaultEvent,
    FaultProxy,
    Latency,
    ProxyStats,
    Reset,
    Selector,
    SlowClose,
)

__all__ = [
    "OTHER",
    "REST",
    "WEBSOCKET",
    "ActiveFault",
    "Bandwidth",
    "BlackHole",
    "ConnInfo",
    "Fault",
    "FaultEvent",
    "FaultProxy",
    "Latency",
    "ProxyStats",
    "Reset",
    "Selector",
    "SlowClose",
]
