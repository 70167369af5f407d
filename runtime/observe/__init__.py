"""Observability stage: a run's trace tree from the store, its HTML report and live progress."""
