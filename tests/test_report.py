"""The HTML data card: exact figures from a small hand-made output, graceful
gaps when stages have not run, and a render in headless Chromium with no
console error and no request leaving the file."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time

import pytest

from tokenmill import cli, tables
from tokenmill.manifest import Manifest, StageRecord
from tokenmill.report import card as report_card
from tokenmill.report import data as report_data
from train_fixture import write_fixture

from stage_facts import chat_etl_extra, dedup_extra, etl_extra, shards_extra

DOC_SCHEMA = "id string, source string, text string, meta string, n_chars int, n_words int, quality double"


def _docs(spark, rows):
    full = [(i, s, t, "{}", len(t), len(t.split()), 0.5) for i, s, t in rows]
    return spark.createDataFrame(full, DOC_SCHEMA)


@pytest.fixture(scope="module")
def out(spark, tmp_path_factory):
    """An output folder as the four stages would leave it, with known figures."""
    out = tmp_path_factory.mktemp("card") / "out"
    loc = lambda name: tables.stage_location(str(out), name)  # noqa: E731
    documents = [
        ("a", "web", "x" * 10), ("b", "web", "y" * 100), ("c", "news", "z" * 1000),
        ("d", "news", "w" * 40), ("e", "forum", "v" * 3), ("f", "forum", "u" * 50),
    ]
    tables.write(_docs(spark, documents), loc("documents"))
    clean = [d for d in documents if d[0] != "e"]  # e: too short
    tables.write(_docs(spark, clean), loc("clean"))
    deduped = [d for d in clean if d[0] not in ("d",)]  # d duplicates c
    tables.write(_docs(spark, deduped), loc("deduped"))
    clusters = spark.createDataFrame(
        [("k1", "c", 2, True), ("k1", "d", 2, False), ("k2", "a", 3, True), ("k2", "g", 3, False),
         ("k2", "h", 3, False)], "cluster_id string, id string, cluster_size int, kept boolean"
    )
    tables.write(clusters, loc("dup_clusters"))
    # Two sequences, EOS = 0: spans between EOS tokens are 3 and 5 tokens long.
    seqs = spark.createDataFrame(
        [(0, [5, 0, 7, 8, 0, 9, 9, 9, 9, 0], "web"), (1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 1], "news")],
        "seq_id long, tokens array<int>, source string",
    )
    tables.write(seqs, loc("sequences"))
    write_fixture(out / "shards", n_train=48, n_val=8, seq_len=16, vocab_size=300)
    info = json.loads((out / "shards" / "dataset.json").read_text())
    info["eos_id"] = 0
    (out / "shards" / "dataset.json").write_text(json.dumps(info))
    m = Manifest(out / "manifest.json")
    m.record(StageRecord("etl", 6, 5, {"too_short": 1},
                         extra={**etl_extra(pii={"EMAIL_ADDRESS": 4, "PHONE_NUMBER": 2}), "mojibake_fixed": 3}))
    m.record(StageRecord("dedup", 5, 4, {"near_duplicate": 1}, extra=dedup_extra()))
    m.record(StageRecord("tokenize", 4, 4, {}, extra={"sequences": 2, "tokens": 20}))
    m.record(StageRecord("shards", 2, 2, {}, extra=shards_extra(
        location=str(out / "shards"),
        shuffle_quality={"train": {"window": 48, "max_share_deviation": 0.25, "worst_source": "web",
                                   "source_sorted_deviation": 0.75}})))
    run = out.parent / "run"
    run.mkdir()
    lines = [{"step": 10, "loss": 5.0, "lr": 1e-3}, {"step": 20, "loss": 4.0, "lr": 9e-4},
             {"step": 20, "loss": 3.5, "lr": 9e-4, "val_loss": 3.9}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{torn")
    return out


@pytest.fixture(scope="module")
def card_html(spark, out):
    path = report_card.write_card(str(out), str(out.parent / "card.html"),
                                  run_log=str(out.parent / "run"), spark=spark)
    return path


def _section(html: str, title: str) -> str:
    start = html.index(f"<h2>{title}</h2>")
    return html[start: html.index("</section>", start)]


def _cells(fragment: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", fragment, flags=re.S)
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r) for r in rows]


def test_figures_are_exact(spark, out, card_html):
    html = card_html.read_text()
    funnel = _cells(_section(html, "Stage funnel"))
    assert funnel[1:] == [
        ["input", "6", "100.0%", "1,203", "100.0%"],
        ["after etl", "5", "83.3%", "1,200", "99.8%"],
        ["after dedup", "4", "66.7%", "1,160", "96.4%"],
        ["tokenized", "4", "66.7%", "", ""],
    ]
    assert _cells(_section(html, "Drops by reason"))[1:] == [
        ["etl", "too_short", "1"], ["dedup", "near_duplicate", "1"]]
    assert _cells(_section(html, "PII replaced, by type"))[1:] == [["EMAIL_ADDRESS", "4"], ["PHONE_NUMBER", "2"]]
    clusters = _section(html, "Duplicate clusters")
    assert _cells(clusters)[1:] == [["2", "1"], ["3", "1"]]
    assert "2 duplicate clusters holding 5 documents; keeping one per cluster removes 3" in clusters
    sources = _cells(_section(html, "Source mix before and after"))
    assert sources[0] == ["source", "documents docs", "documents bytes", "clean docs", "clean bytes",
                          "deduped docs", "deduped bytes", "sequences sequences", "sequences tokens"]
    assert sources[1:] == [["forum", "2", "53", "1", "50", "1", "50", "0", "0"],
                           ["news", "2", "1,040", "2", "1,040", "1", "1,000", "1", "10"],
                           ["web", "2", "110", "2", "110", "2", "110", "1", "10"]]
    # The fixture's shards are in seq_id order: no shuffle at all.
    shuffle = _section(html, "Shuffle quality")
    assert "Read 48 samples" in shuffle and '<b class="bad">1</b>' in shuffle
    assert "Neighbours from the same source" not in shuffle  # 2 of 48 sources known: no verdict
    assert ("train: largest deviation of a source's share in any window of 48 sequences from its "
            "overall share: 0.25 (source web; sorted by source it would be 0.75)") in shuffle
    assert _cells(_section(html, "Token totals"))[1:] == [
        ["train", "48", "768", "1"], ["val", "8", "128", "1"], ["total", "56", "896", "2"]]
    training = _section(html, "Training curves")
    assert "2 logged steps" in training and "1 unreadable line(s) skipped" in training
    assert _cells(training)[1:] == [["loss", "3.5"], ["lr", "0.0009"], ["val_loss", "3.9"]]
    assert ["mojibake_fixed", "3"] in _cells(_section(html, "Figures recorded by each stage"))
    # Every plotted section carries one inline PNG; nothing refers outside the file.
    assert html.count('src="data:image/png;base64,') == 9
    assert ["shuffle_quality.train.max_share_deviation", "0.25"] in _cells(
        _section(html, "Figures recorded by each stage"))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(|<script|<link""", html)


def test_token_lengths_from_eos_spans(spark, out):
    t = report_data.Tables(str(out), None, lambda: spark)
    section = report_data.token_lengths(Manifest.load(out), t, out / "shards")
    # seq 0 = [5, 0, 7, 8, 0, 9, 9, 9, 9, 0]: documents of 2, 3 and 5 tokens (EOS included);
    # seq 1 continues the same stream without an EOS (its document is cut by the tail).
    assert section.data == {"source": "distances between EOS tokens in tables/sequences", "hist": {1: 2, 2: 1}}


def test_shuffle_quality_from_shards_in_storage_order(tmp_path):
    import numpy as np
    from streaming import MDSWriter

    order = [3, 0, 5, 1, 4, 2]  # storage order of seq_ids
    source = {0: "web", 1: "web", 2: "web", 3: "news", 4: "news", 5: "code"}
    split = tmp_path / "shards" / "train"
    columns = {"tokens": "ndarray:uint16:4", "seq_id": "int64", "source": "str"}
    with MDSWriter(out=str(split), columns=columns, compression="zstd", size_limit=1 << 8) as writer:
        for i in order:
            writer.write({"tokens": np.full(4, i, np.uint16), "seq_id": i, "source": source[i]})
    assert len(list(split.glob("shard.*"))) > 1  # several shards, read in index order
    t = report_data.Tables(str(tmp_path), None, lambda: pytest.fail("no table: Spark must not start"))
    data = report_data.shuffle_quality(tmp_path / "shards", t).data
    assert data["samples"] == 6 and data["seq_ids"] == order
    assert data["spearman"] == pytest.approx(1 - 6 * (9 + 1 + 9 + 4 + 0 + 9) / (6 * 35))  # 1 - 6*sum(d^2)/(n(n^2-1))
    # neighbours: news-web, web-code, code-web, web-news, news-web -> 0 of 5 the same
    assert data["adjacent_same_source"] == 0.0
    assert data["expected_same_source"] == pytest.approx((3 / 6) ** 2 + (2 / 6) ** 2 + (1 / 6) ** 2)


def test_card_degrades_when_stages_have_not_run(tmp_path, capsys):
    out = tmp_path / "out"
    Manifest(out / "manifest.json").record(StageRecord("etl", 3, 3, {}, extra=etl_extra(pii={})))
    target = tmp_path / "card.html"
    assert cli.main(["report", str(out), "--html", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"data card: {target}"
    html = target.read_text()
    assert "Not available: dedup has not run" in _section(html, "Duplicate clusters")
    assert "etl found no PII to replace." in _section(html, "PII replaced, by type")
    assert "Not available: no run log given" in _section(html, "Training curves")
    assert f"Not available: no dataset.json in {out / 'shards'}" in _section(html, "Token totals")
    assert "could not be computed" not in html


# --- ordinary outputs with nothing to show in some sections -----------------------------

STORY = ("{0} walked to the market in the village with {1}. The baker sold {1} a loaf of bread "
         "and asked about the river. It was late when {0} came back home; this was story number {2}.")


def _run(spark, out, stages, inputs, **cfg):
    from tokenmill.config import RunConfig, from_dict
    from tokenmill.pipeline import run_stages

    run_stages(spark, from_dict(RunConfig, {"inputs": [{"path": str(inputs)}], "output": str(out), **cfg}), stages)
    return out


def _report(out, capsys) -> str:
    """`tokenmill report OUT`: exit 0, the card written, no section failed or advised a rerun."""
    target = out.parent / "card.html"
    capsys.readouterr()  # the stages' summaries
    assert cli.main(["report", str(out), "--html", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"data card: {target}"
    html = target.read_text()
    assert "could not be computed" not in html and "--force" not in html
    return html


def test_card_of_a_run_whose_dedup_found_no_duplicates(spark, tmp_path, capsys):
    names = ["Anna", "Ben", "Carl", "Dora", "Emil", "Fay", "Gus", "Hugo", "Ida", "Jon", "Kim", "Lea"]
    lines = [json.dumps({"id": f"d{i}", "text": " ".join(STORY.format(a, names[(i + 3) % 12], f"{i}.{j}")
                                                              for j in range(4))}) for i, a in enumerate(names)]
    (tmp_path / "raw.jsonl").write_text("\n".join(lines) + "\n")
    out = _run(spark, tmp_path / "out", ["etl", "dedup", "tokenize", "shards"], tmp_path / "raw.jsonl",
               etl={"pii": {"enabled": False}}, tokenize={"seq_len": 64, "pack_groups": 1, "vocab_size": 300},
               shards={"partitions": 1})
    html = _report(out, capsys)
    assert "<p>No duplicates found among 12 documents.</p>" in _section(html, "Duplicate clusters")
    assert _cells(_section(html, "Stage funnel"))[3][:2] == ["after dedup", "12"]
    assert "Not available" not in _section(html, "Shuffle quality") + _section(html, "Tokens per document")


def test_card_of_an_etl_only_output_that_kept_no_document(spark, tmp_path, capsys):
    (tmp_path / "raw.jsonl").write_text('{oops\n{"id": "b"}\n[1, 2\n')  # every row fails ingest
    out = _run(spark, tmp_path / "out", ["etl"], tmp_path / "raw.jsonl")
    html = _report(out, capsys)
    assert "No documents kept: 0 after etl (see Drops by reason)." in _section(html, "Stage funnel")
    assert _cells(_section(html, "Drops by reason"))[1:] == [["etl", "malformed_json", "2"],
                                                             ["etl", "missing_text", "1"]]
    for section in ("Document lengths", "Source mix before and after"):
        assert ("<p>tables/documents: no documents kept.</p><p>tables/clean: no documents kept.</p>"
                in _section(html, section))
    assert "Not available: dedup has not run" in _section(html, "Duplicate clusters")


def test_card_of_a_chat_output(spark, tmp_path, capsys):
    """Chat tokenize and shards (the records a `tokenmill finetune` output holds) after hand-made etl and dedup."""
    from chat_tokenizers import LLAMA3, bpe, model_dir
    from test_chat_pipeline import VALID, chat_config

    from tokenmill.pipeline import run_stages

    out = tmp_path / "out"
    rows = [(r["id"], "chat", [(m["role"], m["content"]) for m in r["messages"]]) for r in VALID]
    clean = [(i, s, m, "\n\n".join(c for _, c in m), 9, 3, None) for i, s, m in rows]
    schema = ("id string, source string, messages array<struct<role:string,content:string>>, text string, "
              "n_chars int, n_words int, quality double")
    tables.write(spark.createDataFrame(clean, schema), tables.stage_location(str(out), "clean"))
    m = Manifest(out / "manifest.json")
    m.record(StageRecord("etl", 6, 5, {"no_messages": 1}, extra=chat_etl_extra()))
    m.record(StageRecord("dedup", 5, 5, {}, extra=dedup_extra()))
    model = model_dir(tmp_path / "model", bpe(), {"chat_template": LLAMA3, "bos_token": "<|begin_of_text|>",
                                                  "eos_token": "<|eot_id|>"})
    run_stages(spark, chat_config(tmp_path / "raw", out, model), ["tokenize", "shards"])
    html = _report(out, capsys)
    finetune = _section(html, "Fine-tuning data")
    assert "4 examples kept of 6 rows read (66.7%)" in finetune  # one conversation is over 64 tokens
    assert _cells(finetune)[1:3] == [["etl", "no_messages", "1"], ["tokenize", "longer_than_seq_len", "1"]]
    assert "<p>No duplicates found among 5 documents.</p>" in _section(html, "Duplicate clusters")
    assert "tokens per example are in the fine-tuning section" in _section(html, "Tokens per document")
    assert "Read 3 samples of the train split" in _section(html, "Shuffle quality")  # 4 windows, 1 in val
    assert _cells(_section(html, "Token totals"))[-1] == ["total", "4", "256", "2"]


def test_report_of_a_missing_output_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope"), "--html", str(tmp_path / "c.html")]) == 2
    assert "no pipeline output at" in capsys.readouterr().err


# --- headless Chromium, driven over the DevTools protocol on a pipe ------------------

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("headless Chromium is needed: apt-get install -y chromium (Debian's package)")
    return exe


def browse(url: str, timeout: float = 90.0) -> tuple[list[dict], bytes]:
    """Open ``url``; return the DevTools events seen and a full-page PNG screenshot.

    Chromium reads protocol messages on fd 3 and writes on fd 4, each
    terminated by a NUL byte (--remote-debugging-pipe).
    """
    cmd_r, cmd_w = os.pipe()
    res_r, res_w = os.pipe()

    def wire_fds():
        os.dup2(cmd_r, 3)
        os.dup2(res_w, 4)

    profile = tempfile.mkdtemp(prefix="tokenmill-chromium-")
    proc = subprocess.Popen(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,900", "about:blank"],
        preexec_fn=wire_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(cmd_r)
    os.close(res_w)
    events: list[dict] = []
    state = {"buf": b"", "id": 0}

    def send(method, params=None, session=None):
        state["id"] += 1
        msg = {"id": state["id"], "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(cmd_w, json.dumps(msg).encode() + b"\0")
        return state["id"]

    def wait_for(pred):
        deadline = time.time() + timeout
        while True:
            while b"\0" in state["buf"]:
                raw, state["buf"] = state["buf"].split(b"\0", 1)
                msg = json.loads(raw)
                if "method" in msg:
                    events.append(msg)
                if pred(msg):
                    return msg
            ready, _, _ = select.select([res_r], [], [], max(0.0, deadline - time.time()))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            state["buf"] += chunk

    def call(method, params=None, session=None):
        i = send(method, params, session)
        msg = wait_for(lambda m: m.get("id") == i)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg["result"]

    try:
        target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            call(f"{domain}.enable", session=session)
        call("Page.navigate", {"url": url}, session)
        wait_for(lambda m: m.get("method") == "Page.loadEventFired")
        shot = call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)
        call("Runtime.evaluate", {"expression": "document.readyState"}, session)  # drain late events
        send("Browser.close")
    finally:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(cmd_w)
        os.close(res_r)
        shutil.rmtree(profile, ignore_errors=True)
    return events, base64.b64decode(shot["data"])


def problems(events: list[dict]) -> list[str]:
    """Console errors/warnings, uncaught exceptions, failed loads, and any request off the file."""
    found = []
    for e in events:
        p = e["params"]
        if e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning", "assert"):
            found.append(f"console.{p['type']}: {[a.get('value') for a in p['args']]}")
        elif e["method"] == "Runtime.exceptionThrown":
            found.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif e["method"] == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            found.append(f"log: {p['entry']['text']}")
        elif e["method"] == "Network.requestWillBeSent" and not p["request"]["url"].startswith(("file:", "data:")):
            found.append(f"request: {p['request']['url']}")
    return found


def _image_colors(png: bytes) -> int:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 20) or [])


def test_browser_check_sees_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img src="missing.png"><script>console.error("boom"); nope();</script>'
                    '<img src="https://example.invalid/x.png"></body></html>')
    found = problems(browse(page.as_uri())[0])
    assert "console.error: ['boom']" in found
    assert "exception: Uncaught" in found
    assert "log: Failed to load resource: net::ERR_FILE_NOT_FOUND" in found
    assert "request: https://example.invalid/x.png" in found


def test_card_renders_in_headless_chromium(card_html, tmp_path):
    events, png = browse(card_html.resolve().as_uri())
    assert problems(events) == []
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "card.png").write_bytes(png)
    from PIL import Image

    width, height = Image.open(io.BytesIO(png)).size
    assert width >= 1000 and height > 3000  # the whole card, not one screen
    assert _image_colors(png) > 50  # text and plots, not a blank page
