"""The one set of number formats: exact strings at each unit's edges."""

from __future__ import annotations

import pytest

from tokenmill import units


@pytest.mark.parametrize("n, text", [(999, "999 B"), (1000, "1.0 KB"), (1_500_000, "1.5 MB"), (2.5e15, "2500.0 TB")])
def test_human_bytes(n, text):
    assert units.human_bytes(n) == text


@pytest.mark.parametrize("n, text", [(99e6, "99.0 MB"), (1e8, "0.10 GB"), (1.2345e12, "1,234.50 GB")])
def test_gb(n, text):
    assert units.gb(n) == text


@pytest.mark.parametrize("largest, unit", [(999, (1.0, "B")), (1000, (1e3, "KB")), (3e9, (1e9, "GB"))])
def test_byte_unit(largest, unit):
    assert units.byte_unit(largest) == unit


@pytest.mark.parametrize("s, text", [(59.4, "59s"), (65, "1m05s"), (7320, "2h02m")])
def test_human_seconds(s, text):
    assert units.human_seconds(s) == text


@pytest.mark.parametrize("h, text", [(0.005, "18.0 s"), (0.5, "30.0 min"), (3.25, "3.2 h"), (62.4, "2.6 days")])
def test_hours(h, text):
    assert units.hours(h) == text


@pytest.mark.parametrize("x, text", [(0.0421, "$0.0421"), (12.34, "$12.3"), (530_839.4, "$530,839"),
                                     (1_234_567, "$1.23M")])
def test_usd(x, text):
    assert units.usd(x) == text


@pytest.mark.parametrize("x, text", [(999, "999"), (125e6, "125M"), (30e9, "30B"), (1.08e23, "1.08e+23")])
def test_count(x, text):
    assert units.count(x) == text
