"""HTTP edges of a trading process: metrics and health endpoints (the admin panel comes later)."""
