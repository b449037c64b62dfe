"""The etl stage: ingest raw inputs, clean and filter them, strip PII."""
