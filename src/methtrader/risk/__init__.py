"""Risk measures for positions and portfolios: Value-at-Risk, Expected Shortfall and their helpers."""
