"""Operations: metrics, structured logs and alerts that every methtrader process exports."""
