"""Ingest stage: inputs read into the store, chunked into rows that fit an LM's window."""
