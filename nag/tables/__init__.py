"""Tabular benchmarks: lookups of measured metrics from a user-given CSV (see docs/benchmark_tables.md)."""
from nag.tables.table import DUPLICATE_POLICIES, BenchmarkTable

__all__ = ["BenchmarkTable", "DUPLICATE_POLICIES"]
