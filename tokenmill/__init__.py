"""tokenmill: Spark data preparation and an FSDP trainer for language models."""

__version__ = "0.1.0"
