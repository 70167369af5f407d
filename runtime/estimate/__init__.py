"""Estimation stage (``rlm plan --estimate``): the report, per-step costs, placeholders."""
