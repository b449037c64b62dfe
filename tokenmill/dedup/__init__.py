"""Exact and MinHash-LSH near-duplicate removal (the dedup stage)."""
