"""Helpers shared by the test suite (private servers, fixtures' building blocks)."""
