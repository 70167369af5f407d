"""Optimization stage (``rlm optimize``): trainsets, metrics and the DSPy optimizer loop."""
