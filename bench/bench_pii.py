"""PII benchmark: tokenmill's windowed presidio vs presidio's AnalyzerEngine as documented.

Baseline: ``AnalyzerEngine`` with its default recognizer registry, calling
``analyze(text, language="en")`` on whole documents. No spaCy model can be
downloaded here, so the baseline's NLP engine is either presidio's ``no_op``
engine (``--baseline noop``: no tokens, so the context enhancer has nothing
to do: the fastest presidio setup) or a blank English spaCy pipeline
(``--baseline blank``: tokens and the lemma context enhancer run, closer to
the documented default with ``en_core_web_lg``).

Ours: ``tokenmill.etl.pii.Redactor.find`` with the default etl config (the
same presidio recognizers, on candidate windows only).

Throughput is CPU seconds of this one process (``time.process_time``), so
other load on the machine counts little; both run on the same texts, one
core each, ``--repeat`` times (fresh engines each time), and the fastest run
of each counts. Recall: of the spans presidio-default reports for the pattern
entities we configure, the share we report with the same type and offsets
(``exact``), and the share lying inside one of our findings of any type
(``covered``: it would be redacted).

    python -m bench.bench_pii --corpus sample
    python -m bench.bench_pii --corpus machine --mb 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""


def presidio_engine(kind: str):
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    if kind == "noop":
        conf = {"nlp_engine_name": "no_op", "models": [{"lang_code": "en", "model_name": "no_op"}]}
    else:
        import spacy

        path = tempfile.mkdtemp(prefix="blank-en-")
        spacy.blank("en").to_disk(path)
        conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": path}]}
    return AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=conf).create_engine())


def timed(make, docs, repeat: int):
    """Findings of one run and the fewest CPU seconds over ``repeat`` runs, each
    with a fresh engine from ``make`` (so no memo carries over)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        fn = make()
        start = time.process_time()
        out = [fn(d) for d in docs]
        best = min(best, time.process_time() - start)
    return out, best


def warm(fn):
    fn("warm up a@example.com 192.168.0.1")
    return fn


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", choices=["sample", "machine"], default="sample")
    p.add_argument("--mb", type=float, default=4.0, help="MB of machine text (corpus machine)")
    p.add_argument("--baseline", choices=["noop", "blank"], default="noop")
    p.add_argument("--max-doc-chars", type=int, default=200_000,
                   help="cut longer documents (presidio's blank-spaCy baseline is quadratic in tokens)")
    p.add_argument("--phone-regions", default=None,
                   help="comma-separated phone regions for ours (default: the etl default, presidio's 8)")
    p.add_argument("--repeat", type=int, default=3, help="runs per side; the fastest counts")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)

    from bench.etl_corpus import machine_docs, print_result, sample_docs
    from tokenmill.config.etl import PiiConfig
    from tokenmill.etl.pii import Redactor

    docs = sample_docs() if args.corpus == "sample" else machine_docs(int(args.mb * 1e6))
    docs = [d[: args.max_doc_chars] for d in docs]
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    cfg = PiiConfig() if not args.phone_regions else PiiConfig(phone_regions=tuple(args.phone_regions.split(",")))
    wanted = set(cfg.entities)
    print(f"corpus {args.corpus}: {len(docs)} docs, {n_bytes / 1e6:.2f} MB", file=sys.stderr)

    engine = presidio_engine(args.baseline)
    theirs, t_theirs = timed(lambda: warm(lambda d: engine.analyze(d, language="en")), docs, args.repeat)
    ours, t_ours = timed(lambda: warm(Redactor(cfg).find), docs, args.repeat)

    total = exact = covered = 0
    by_entity: dict[str, list[int]] = {}
    missed = []
    for d, rs, fs in zip(docs, theirs, ours):
        mine = {(f.entity, f.start, f.end) for f in fs}
        for r in rs:
            if r.entity_type not in wanted:
                continue
            total += 1
            row = by_entity.setdefault(r.entity_type, [0, 0, 0])
            row[0] += 1
            if (r.entity_type, r.start, r.end) in mine:
                exact += 1
                row[1] += 1
            if any(f.start <= r.start and r.end <= f.end for f in fs):
                covered += 1
                row[2] += 1
            elif len(missed) < 10:
                missed.append((r.entity_type, d[max(0, r.start - 30):r.end + 30]))
    found_ours = sum(1 for fs in ours for f in fs)
    result = {
        "corpus": args.corpus, "docs": len(docs), "mb": round(n_bytes / 1e6, 3),
        "baseline": f"presidio AnalyzerEngine default registry, nlp={args.baseline}",
        "ours_phone_regions": list(cfg.phone_regions), "repeat": args.repeat,
        "presidio_cpu_s": round(t_theirs, 2), "presidio_mb_s": round(n_bytes / 1e6 / t_theirs, 3),
        "ours_cpu_s": round(t_ours, 2), "ours_mb_s": round(n_bytes / 1e6 / t_ours, 3),
        "speedup": round(t_theirs / t_ours, 1),
        "presidio_spans": total, "ours_spans": found_ours,
        "recall_exact": round(exact / total, 4) if total else None,
        "recall_covered": round(covered / total, 4) if total else None,
        "by_entity": {e: {"presidio": v[0], "exact": v[1], "covered": v[2]} for e, v in sorted(by_entity.items())},
    }
    print_result(result, args.json)
    for entity, context in missed:
        print(f"missed {entity}: {context!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
