"""Benchmarks run only when asked: ``pytest tests/benchmarks --benchmark-only`` (CUDA ones with -m cuda)."""
