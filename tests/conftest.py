"""Shared fixtures. One local Spark session serves the whole test run."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENMILL_PROGRESS_S", "0")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")


@pytest.fixture(scope="session")
def spark():
    from tokenmill.spark import get_spark

    session = get_spark("tokenmill-tests", cores=2)
    session.conf.set("spark.sql.shuffle.partitions", "4")
    yield session
