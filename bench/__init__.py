"""rlm-dsl benchmarks: per-issue performance scripts (``bench_*.py``) and the quality suite.

Bench stage (outside the shipped package). ``python -m bench`` (see :mod:`bench.__main__`) runs
the long-context quality suite in :mod:`bench.quality` and, with ``--perf``, the performance
scripts; each script also runs on its own (``python bench/bench_scale.py``).
"""
