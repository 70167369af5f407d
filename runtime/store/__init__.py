"""Store stage: the run's DuckDB database, its buffered writer and the queries on its system tables."""
