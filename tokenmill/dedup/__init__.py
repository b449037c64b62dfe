"""Exact and MinHash-LSH near-duplicate removal (the dedup stage)."""

# Import the run config first: on a Spark worker the first import may be a
# dedup submodule, and dedup.config <-> tokenmill.config import each other.
import tokenmill.config  # noqa: F401
