"""Bybit V5 client support: rate-limit table, request governor and rate-limit monitoring."""
