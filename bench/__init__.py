"""Benchmarks of ``campaign`` (run by hand; see bench/RESULTS.md). Run each as ``python -m bench.NAME``."""
