"""Log inputs: format detection and parsing in DuckDB, templates and dedup, ingest."""
