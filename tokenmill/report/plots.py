"""The data card's figures: matplotlib (Agg) -> PNG -> base64 ``<img>``.

The card must open from a file with no network, so each figure is inlined as
a data URI; no script, font or style sheet is loaded from anywhere.
"""

from __future__ import annotations

import base64
import io
from typing import Optional

from tokenmill.units import byte_unit

COLORS = ["#3b6ea8", "#e07b39", "#5a9e5a", "#c4484f", "#8a6bb8", "#8c6d5a", "#d17fb4", "#7f7f7f"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_img(fig, alt: str) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


def _fig(width: float = 7.0, height: float = 3.2, cols: int = 1):
    plt = _plt()
    fig, axes = plt.subplots(1, cols, figsize=(width, height))
    return fig, axes


def _label_bars(ax, bars, values, fmt) -> None:
    for bar, value in zip(bars, values):
        ax.annotate(fmt(value), (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)


def funnel(rows: list[dict]) -> str:
    has_bytes = any(r.get("bytes") is not None for r in rows)
    fig, axes = _fig(9 if has_bytes else 6, 0.5 + 0.45 * len(rows), 2 if has_bytes else 1)
    axes = list(axes) if has_bytes else [axes]
    steps = [r["step"] for r in rows][::-1]
    docs = [r["docs"] for r in rows][::-1]
    bars = axes[0].barh(steps, docs, color=COLORS[0])
    _label_bars(axes[0], bars, docs, lambda v: f"{v:,}")
    axes[0].set_xlabel("documents")
    axes[0].set_xlim(0, max(docs + [1]) * 1.25)
    _integer_axis(axes[0].xaxis)
    if has_bytes:
        known = [r for r in rows if r.get("bytes") is not None]
        scale, unit = byte_unit(max(r["bytes"] for r in known))
        values = [r["bytes"] / scale for r in known][::-1]
        bars = axes[1].barh([r["step"] for r in known][::-1], values, color=COLORS[1])
        _label_bars(axes[1], bars, values, lambda v: f"{v:,.1f} {unit}")
        axes[1].set_xlabel(f"text bytes ({unit})")
        axes[1].set_ylim(axes[0].get_ylim())
        axes[1].set_xlim(0, max(values + [1e-9]) * 1.35)
        axes[1].set_yticklabels([])
    fig.suptitle("Documents and bytes through the pipeline", fontsize=10)
    return to_img(fig, "stage funnel")


def _integer_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def hbar(counts: dict[str, int], title: str, xlabel: str, color: str = COLORS[0]) -> str:
    items = list(counts.items())[:25]
    fig, ax = _fig(7, max(1.5, 0.6 + 0.3 * len(items)))  # room for the title and axis label
    labels = [k for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    bars = ax.barh(labels, values, color=color)
    _label_bars(ax, bars, values, lambda v: f"{v:,}")
    ax.set_xlim(0, max(values + [1]) * 1.2)
    _integer_axis(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    return to_img(fig, title)


def cluster_sizes(hist: dict[int, int]) -> str:
    fig, ax = _fig(6, 3)
    sizes = sorted(hist)
    ax.bar([str(s) for s in sizes], [hist[s] for s in sizes], color=COLORS[3])
    ax.set_xlabel("documents in the cluster")
    ax.set_ylabel("clusters")
    _integer_axis(ax.yaxis)
    ax.set_title("Duplicate cluster sizes", fontsize=10)
    return to_img(fig, "duplicate cluster sizes")


def _bucket_label(k: int) -> str:
    return "0" if k < 0 else f"{2 ** k:,}"


def log2_histograms(series: dict[str, dict[int, int]], title: str, xlabel: str) -> str:
    """Overlaid log2-bucket histograms, as shares of each series' total."""
    fig, ax = _fig(7, 3.2)
    buckets = sorted({k for hist in series.values() for k in hist})
    width = 0.8 / max(1, len(series))
    for i, (name, hist) in enumerate(series.items()):
        total = sum(hist.values()) or 1
        xs = [j + i * width for j in range(len(buckets))]
        ax.bar(xs, [100 * hist.get(b, 0) / total for b in buckets], width=width,
               color=COLORS[i % len(COLORS)], label=f"{name} ({total:,})")
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(buckets))])
    ax.set_xticklabels([_bucket_label(b) for b in buckets], rotation=45, fontsize=8)
    ax.set_xlabel(xlabel + " (bucket lower bound, powers of 2)")
    ax.set_ylabel("% of rows")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return to_img(fig, title)


def source_mix(mix: dict[str, dict[str, dict]]) -> str:
    """100% stacked bars: each table's share by source (bytes, or tokens for sequences)."""
    names = list(mix)
    sources = sorted({s for table in mix.values() for s in table}, key=str)
    fig, ax = _fig(8, 0.8 + 0.5 * len(names))
    left = [0.0] * len(names)
    for i, source in enumerate(sources):
        shares = []
        for name in names:
            table = mix[name]
            measure = "tokens" if name == "sequences" else "bytes"
            total = sum(v.get(measure, 0) for v in table.values()) or 1
            shares.append(100 * table.get(source, {}).get(measure, 0) / total)
        ax.barh([f"{n} ({'tokens' if n == 'sequences' else 'bytes'})" for n in names], shares, left=left,
                color=COLORS[i % len(COLORS)], label=str(source))
        left = [a + b for a, b in zip(left, shares)]
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% share")
    ax.legend(fontsize=8, ncol=max(1, min(6, len(sources))), loc="upper center", bbox_to_anchor=(0.5, -0.35))
    ax.set_title("Source mix before and after", fontsize=10)
    return to_img(fig, "source mix")


def shuffle(seq_ids: list[int]) -> str:
    import numpy as np

    ranks = np.argsort(np.argsort(np.asarray(seq_ids)))  # seq_ids are sparse: plot their order
    fig, ax = _fig(6, 3.2)
    ax.scatter(range(len(ranks)), ranks, s=2, color=COLORS[0], alpha=0.6)
    ax.set_xlabel("position in the train split (storage order)")
    ax.set_ylabel("rank of seq_id (order before the shuffle)")
    ax.set_title("Shuffle: a good one looks like noise", fontsize=10)
    return to_img(fig, "shuffle scatter")


def training(series: dict[str, list]) -> Optional[str]:
    panels = [k for k in ("loss", "lr", "tokens_per_s", "mfu", "grad_norm") if k in series]
    if not panels:
        panels = list(series)[:3]
    if not panels:
        return None
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    plt = _plt()
    fig, grid = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.0 * rows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, key in zip(axes, panels):
        steps, values = zip(*series[key])
        ax.plot(steps, values, color=COLORS[0], label=key)
        if key == "loss" and "val_loss" in series:
            vs, vv = zip(*series["val_loss"])
            ax.plot(vs, vv, "o-", color=COLORS[1], label="val_loss")
        ax.set_xlabel("step")
        ax.set_title(key, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return to_img(fig, "training curves")
