"""Benchmarks: each script prints a table and saves the same numbers as JSON."""
