"""``tokenmill report OUT --html FILE``: a self-contained HTML data card.

One file that opens offline in any browser (figures are inlined PNGs, no
script): stage funnel (documents and bytes), drops by reason, PII by type,
duplicate cluster sizes, document and token length distributions, source
mix before/after, shuffle quality, token totals, for chat and instruction
runs the fine-tuning data (rejects by reason, tokens per example, packing
efficiency), every stage's own figures, and training curves when a run log
is given. A stage that has not run yet
leaves its section with a note instead of failing the card.
"""

from __future__ import annotations

import argparse
import html
import math
import time
from pathlib import Path
from typing import Any, Optional

from tokenmill.errors import UserError
from tokenmill.report import plots
from tokenmill.report.data import CardData, Section, gather

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 980px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f6f8; }
.missing { color: #8a6d3b; background: #fcf8e3; padding: 0.4em 0.8em; border-radius: 4px; }
.good { color: #2e7d32; } .bad { color: #c62828; }
img { max-width: 100%; }
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="pipeline output folder (holds manifest.json)")
    parser.add_argument("--html", required=True, metavar="FILE", help="where to write the data card")
    parser.add_argument("--run-log", metavar="FILE",
                        help="training metrics (RUN_DIR/metrics.jsonl, or the run dir) for training curves")
    parser.add_argument("--shards", metavar="DIR", help="shards folder (default: OUT/shards)")
    parser.add_argument("--catalog-schema", metavar="CATALOG.SCHEMA",
                        help="read stage tables from this Unity Catalog schema instead of OUT/tables")


def main(args: argparse.Namespace) -> int:
    path = write_card(args.out, args.html, run_log=args.run_log, shards=args.shards,
                      catalog_schema=args.catalog_schema)
    print(f"data card: {path}")
    return 0


def write_card(
    out: str,
    html_path: str,
    run_log: Optional[str] = None,
    shards: Optional[str] = None,
    catalog_schema: Optional[str] = None,
    spark=None,
) -> Path:
    """Gather the figures and write the card; returns its path."""
    if not (Path(out) / "manifest.json").is_file() and not Path(out).is_dir():
        raise UserError(f"no pipeline output at {out}: pass the OUT folder given to `tokenmill run --output`")

    def spark_factory():
        if spark is not None:
            return spark
        from tokenmill.spark import get_spark

        return get_spark("tokenmill-report")

    card = gather(out, spark_factory, catalog_schema=catalog_schema, run_log=run_log, shards=shards)
    target = Path(html_path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(card), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the data card to {target}: {exc.strerror}") from None
    return target


# --- HTML ---------------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{esc(fmt(v))}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
            else f"<td>{esc(fmt(v))}</td>" for v in row
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def missing(section: Section) -> str:
    return f'<p class="missing">Not available: {esc(section.missing or "no data")}</p>'


def render(card: CardData) -> str:
    s = card.sections
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>tokenmill data card: {esc(card.out)}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Data card</h1>",
        f'<p class="meta">Output <code>{esc(card.out)}</code> &middot; written '
        f'{esc(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))} &middot; stages run: '
        f'{esc(", ".join(card.manifest.get("stages", {})) or "none")}</p>',
    ]
    parts += _section("Stage funnel", s.get("funnel"), _funnel)
    parts += _section("Drops by reason", s.get("drops"), _drops)
    parts += _section("PII replaced, by type", s.get("pii"), _pii)
    parts += _section("Duplicate clusters", s.get("clusters"), _clusters)
    parts += _section("Document lengths", s.get("doc_lengths"), _doc_lengths)
    parts += _section("Tokens per document", s.get("token_lengths"), _token_lengths)
    parts += _section("Source mix before and after", s.get("sources"), _sources)
    parts += _section("Shuffle quality", s.get("shuffle"), _shuffle)
    parts += _section("Token totals", s.get("tokens"), _tokens)
    if s.get("finetune") is not None:  # chat and instruction runs only
        parts += _section("Fine-tuning data", s["finetune"], _finetune)
    parts += _section("Training curves", s.get("training"), _training)
    parts += _section("Figures recorded by each stage", s.get("stage_figures"), _stage_figures)
    parts.append("</body></html>")
    return "\n".join(parts)


def _section(title: str, section: Optional[Section], body) -> list[str]:
    section = section or Section(missing="not computed")
    content = body(section.data) if section.ok else missing(section)
    return [f"<section><h2>{esc(title)}</h2>", content, "</section>"]


def _funnel(rows: list[dict]) -> str:
    out = [plots.funnel(rows)]
    first = rows[0]
    out.append(table(
        ["step", "documents", "% of input", "text bytes", "% of input bytes"],
        [[r["step"], r["docs"], _pct(r["docs"], first["docs"]), r.get("bytes"),
          _pct(r.get("bytes"), first.get("bytes"))] for r in rows],
    ))
    if first["docs"] == 0:
        out.append("<p>The input held no documents.</p>")
    elif rows[-1]["docs"] == 0:
        empty = next(r for r in rows if r["docs"] == 0)
        out.append(f"<p>No documents kept: 0 {esc(empty['step'])} (see Drops by reason).</p>")
    return "\n".join(out)


def _pct(value: Optional[float], total: Optional[float]) -> Any:
    if value is None or not total:
        return ""
    return f"{100 * value / total:.1f}%"


def _drops(rows: list[dict]) -> str:
    if not rows:
        return "<p>No document was dropped.</p>"
    counts = {f"{r['stage']}: {r['reason']}": r["rows"] for r in sorted(rows, key=lambda r: -r["rows"])}
    return plots.hbar(counts, "Rows dropped, by stage and reason", "rows", plots.COLORS[3]) + table(
        ["stage", "reason", "rows"], [[r["stage"], r["reason"], r["rows"]] for r in rows]
    )


def _pii(counts: dict[str, int]) -> str:
    if not counts:
        return "<p>etl found no PII to replace.</p>"
    return plots.hbar(counts, "PII replaced by placeholders", "occurrences", plots.COLORS[4]) + table(
        ["type", "occurrences"], [[k, v] for k, v in counts.items()]
    )


def _clusters(data: dict) -> str:
    hist = data["hist"]
    if not data["enabled"]:
        return "<p>Dedup was off (dedup.enabled: false): no document was compared.</p>"
    if not data["compared"]:
        return "<p>No documents to compare: dedup read none.</p>"
    if not hist:
        return f"<p>No duplicates found among {data['compared']:,} documents.</p>"
    clusters = sum(hist.values())
    docs = sum(size * n for size, n in hist.items())
    removed = docs - clusters
    return plots.cluster_sizes(hist) + (
        f"<p>{clusters:,} duplicate clusters holding {docs:,} documents; keeping one per cluster "
        f"removes {removed:,}. Largest cluster: {max(hist):,} documents.</p>"
    ) + table(["cluster size", "clusters"], [[k, v] for k, v in sorted(hist.items())])


def _doc_lengths(series: dict[str, dict[int, int]]) -> str:
    shown = {name: hist for name, hist in series.items() if hist}
    notes = "".join(f"<p>tables/{esc(name)}: no documents kept.</p>" for name, hist in series.items() if not hist)
    return (plots.log2_histograms(shown, "Characters per document", "characters") if shown else "") + notes


def _token_lengths(data: dict) -> str:
    return plots.log2_histograms({"documents": data["hist"]}, "Tokens per document", "tokens") + (
        f"<p>From {esc(data['source'])}.</p>"
    )


def _sources(mix: dict[str, dict[str, dict]]) -> str:
    notes = "".join(f"<p>tables/{esc(name)}: no {'sequences' if name == 'sequences' else 'documents'} kept.</p>"
                    for name, by_source in mix.items() if not by_source)
    mix = {name: by_source for name, by_source in mix.items() if by_source}
    if not mix:
        return notes
    names = list(mix)
    sources = sorted({src for t in mix.values() for src in t}, key=str)
    headers = ["source"] + [
        f"{n} {m}" for n in names for m in (("sequences", "tokens") if n == "sequences" else ("docs", "bytes"))
    ]
    rows = []
    for src in sources:
        row: list[Any] = [src]
        for n in names:
            for m in (("sequences", "tokens") if n == "sequences" else ("docs", "bytes")):
                row.append(mix[n].get(src, {}).get(m, 0))
        rows.append(row)
    return plots.source_mix(mix) + table(headers, rows) + notes


def _shuffle(data: dict) -> str:
    rho = data["spearman"]
    verdict = "good" if math.isfinite(rho) and abs(rho) < 0.1 else "bad"
    lines = [
        f"<p>Read {data['samples']:,} samples of the train split in storage order. "
        f'Rank correlation of position and pre-shuffle order (Spearman): <b class="{verdict}">{fmt(rho)}</b> '
        f"(0 for a thorough shuffle, 1 for none).</p>"
    ]
    if "adjacent_same_source" in data:
        lines.append(
            f"<p>Neighbours from the same source: {100 * data['adjacent_same_source']:.1f}% "
            f"(random order would give {100 * data['expected_same_source']:.1f}%).</p>"
        )
    for split, q in (data.get("stage") or {}).items():
        if isinstance(q, dict) and "max_share_deviation" in q:
            lines.append(
                f"<p>{esc(split)}: largest deviation of a source's share in any window of "
                f"{fmt(q.get('window'))} sequences from its overall share: {fmt(q['max_share_deviation'])} "
                f"(source {esc(q.get('worst_source') or '-')}; sorted by source it would be "
                f"{fmt(q.get('source_sorted_deviation'))}).</p>"
            )
        if isinstance(q, dict) and q.get("neighbour_gap_ratio") is not None:
            lines.append(
                f"<p>{esc(split)}: sequences stored next to each other lie {fmt(q['neighbour_gap_ratio'])}x as far "
                f"apart in input order as in a random order (1 for a thorough shuffle; "
                f"{fmt(q.get('input_order_gap_ratio'))} in input order).</p>"
            )
    return plots.shuffle(data["seq_ids"]) + "\n".join(lines)


def _tokens(data: dict) -> str:
    rows = [[name, s.get("sequences"), s.get("tokens"), s.get("shards")] for name, s in data["splits"].items()]
    rows.append(["total", sum(int(s.get("sequences") or 0) for s in data["splits"].values()),
                 data["total_tokens"], sum(int(s.get("shards") or 0) for s in data["splits"].values())])
    return table(["split", "sequences", "tokens", "shards"], rows) + (
        f"<p>seq_len {fmt(data['seq_len'])}, vocabulary {fmt(data['vocab_size'])}, "
        f"EOS id {fmt(data['eos_id'])}, token dtype {esc(data['dtype'])}.</p>"
    )


def _finetune(data: dict) -> str:
    rows_in, kept = data["rows_in"], data["examples"]
    lines = [f"<p>{esc(data['task'])} rows, template {esc(data['template'])}, windows of {fmt(data['seq_len'])} "
             f"tokens: {fmt(kept)} examples kept of {fmt(rows_in)} rows read ({_pct(kept, rows_in)})"
             + (f", {fmt(data['truncated'])} truncated to fit" if data["truncated"] else "") + ".</p>"]
    if data["rejects"]:
        lines.append(table(["stage", "reason", "rows"], [[r["stage"], r["reason"], r["rows"]] for r in data["rejects"]]))
    n = data["lengths"]
    if n:
        lines.append(table(["tokens per example", "min", "p50", "p90", "p99", "max", "mean"],
                           [["", n["min"], n["p50"], n["p90"], n["p99"], n["max"], n["mean"]]]))
    p = data["packing"]
    lines.append(table(
        ["layout", "windows", "non-pad share", "target share"],
        [["packed (best-fit decreasing)", p["windows"], p["packed"]["token_share"], p["packed"]["target_share"]],
         ["one example per window", p["examples"], p["one_per_window"]["token_share"],
          p["one_per_window"]["target_share"]]]))
    return "\n".join(lines)


def _training(data: dict) -> str:
    img = plots.training(data["series"]) or "<p>No numeric series in the run log.</p>"
    last = {k: v[-1][1] for k, v in data["series"].items()}
    note = f" ({data['bad_lines']} unreadable line(s) skipped)" if data["bad_lines"] else ""
    return img + f"<p>{data['steps']:,} logged steps from <code>{esc(data['path'])}</code>{note}.</p>" + table(
        ["metric", "last value"], [[k, v] for k, v in last.items()]
    )


def _stage_figures(figures: dict[str, dict]) -> str:
    parts = []
    for stage, values in figures.items():
        parts.append(f"<h3>{esc(stage)}</h3>")
        parts.append(table(["figure", "value"], [[k, v] for k, v in values.items()]))
    return "\n".join(parts)
