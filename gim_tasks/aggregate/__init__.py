"""Aggregation: the hierarchy registry, aggregate tables, re-aggregation requests (SPEC S7,
M3, M4, D3)."""
