"""The etl stage: ingest raw inputs, clean and filter them, strip PII."""

# tokenmill.config composes the stage configs; load it first so importing
# tokenmill.etl.config on its own never meets a half-built tokenmill.config.
import tokenmill.config  # noqa: F401,E402
