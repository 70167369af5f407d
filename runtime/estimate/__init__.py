"""Estimation stage (``rlm plan --estimate``): the forecast's report, per-step costs, placeholders."""
