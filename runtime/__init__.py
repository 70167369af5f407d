"""Runtime: executes a Plan over a DuckDB store with DSPy modules and LM back ends."""
