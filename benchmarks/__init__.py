"""Benchmarks: API calls and wall time of reconcile cycles at 1k-100k deals, against naive strategies.

Run with ``make bench`` (``python -m benchmarks.run --help``). Not part of ``make test``.
"""
