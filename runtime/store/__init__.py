"""Store stage: the run's DuckDB database, its buffered writer, its system-table queries."""
