"""Numbers as people read them: counts, bytes, durations and money.

Every printed figure of the package goes through here, so the same
quantity reads the same way in progress lines, stage summaries, the plan,
the pre-flight checklist, the fine-tuning dry run and the data card.
Decimal units throughout (1 KB = 1000 bytes), as disks and clouds count.
Pure Python: no imports.
"""

from __future__ import annotations

BYTE_UNITS = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB"))


# --- counts -------------------------------------------------------------------------------


def count(x: float) -> str:
    """12.3B, 600B, 1.1e23 style: short and exact enough to read."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale and abs(x) < 1e15:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


# --- bytes --------------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    """'512 B', '1.5 KB', '20.0 MB': one decimal from KB up to TB."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def gb(n: float) -> str:
    """A size on disk: '12.35 GB' from 100 MB up, else '45.6 MB' (thousands separated)."""
    return f"{n / 1e9:,.2f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def byte_unit(largest: float) -> tuple[float, str]:
    """(scale, unit) to show byte counts up to ``largest`` on one axis: (1e6, 'MB')."""
    for scale, unit in BYTE_UNITS:
        if largest >= scale:
            return scale, unit
    return 1.0, "B"


# --- durations ----------------------------------------------------------------------------


def human_seconds(s: float) -> str:
    """A clock reading for elapsed time: '42s', '3m05s', '2h07m'."""
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def hours(h: float) -> str:
    """An estimated duration given in hours: '12.0 s', '7.5 min', '3.2 h', '6.2 days'."""
    if h < 1 / 60:
        return f"{h * 3600:.1f} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    if h < 48:
        return f"{h:.1f} h"
    return f"{h / 24:.1f} days"


# --- money --------------------------------------------------------------------------------


def usd(x: float) -> str:
    """'$0.042', '$12.3', '$530,839', '$1.23M': three figures when small, whole dollars, then millions."""
    if x >= 1e6:
        return f"${x / 1e6:,.2f}M"
    return f"${x:,.0f}" if x >= 100 else f"${x:.3g}"
