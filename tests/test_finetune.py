"""``tokenmill finetune`` end to end on a tiny Llama with a ChatML template.

One output folder serves every test: the dry run makes the data outputs
(every reject case of tests/test_chat_pipeline.py next to a few hundred
generated support conversations), the real run skips those stages and
trains from the model's weights, and a third run finds everything up to date.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from chat_tokenizers import CHATML
from test_chat_pipeline import EXPECTED, VALID, write_inputs

from tokenmill import cli, tables
from train_fixture import CHAT_SPECIALS, train_tokenizer, write_hf_model
from tokenmill.train.runlog import read_jsonl

SEQ_LEN = 128
STEPS = 20
ITEMS = ["lamp", "kettle", "bicycle", "jacket", "printer", "guitar", "camera", "sofa", "drill", "tent"]
CITIES = ["Oslo", "Lyon", "Porto", "Graz", "Leeds", "Turin", "Malmo", "Bruges", "Cork", "Split"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def support_conversations(n: int, seed: int) -> list[dict]:
    """Order questions whose answers repeat the item and city asked about (learnable), 1-2 turns."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        messages = []
        for _ in range(rng.randint(1, 2)):
            item, city, day = rng.choice(ITEMS), rng.choice(CITIES), rng.choice(DAYS)
            messages += [{"role": "user", "content": f"Order {1000 + i}: where is my {item} from {city}?"},
                         {"role": "assistant", "content": f"Your {item} left {city} on {day}."}]
        rows.append({"id": f"gen-{i:04d}", "messages": messages})
    return rows


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, int]:
    root, n_literal = write_inputs(tmp_path_factory.mktemp("ft") / "raw")
    generated = support_conversations(300, 1)
    (root / "generated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in generated))
    return root, n_literal + len(generated)


@pytest.fixture(scope="module")
def model(inputs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model")
    # Trained on the template's own words too, so an example takes a few dozen tokens.
    texts = [f"system\nYou are a helpful assistant.\nuser\n{m['content']}\nassistant\n"
             for r in support_conversations(300, 2) for m in r["messages"]]
    tok = train_tokenizer(texts + [m["content"] for r in VALID for m in r["messages"]], 512, CHAT_SPECIALS)
    tok.save(str(root / "tokenizer.json"))
    model = write_hf_model(root / "model", "llama", vocab_size=tok.get_vocab_size(), tokenizer_dir=root)
    (model / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML, "bos_token": None,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "model_max_length": 256}))
    return model


@pytest.fixture(scope="module")
def data_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "data.yaml"
    path.write_text(json.dumps({  # YAML reads JSON
        "etl": {"pii": {"entities": ["EMAIL_ADDRESS"]}},
        "shards": {"seed": 1, "partitions": 1, "val_fraction": 0.1},
        "tokenize": {"pack_groups": 2},
    }))
    return path


def finetune(*flags: str) -> tuple[int, str]:
    """Run ``tokenmill finetune`` in this process; (exit code, stdout + stderr)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(["finetune", *flags])
    return code, out.getvalue()


def flags(inputs, model, data_config, out: Path, *more: str) -> list[str]:
    return ["--model", str(model), "--data", str(inputs[0]), "--output", str(out), "--seq-len", str(SEQ_LEN),
            "--steps", str(STEPS), "--lr", "3e-3", "--nproc", "1", "--data-config", str(data_config),
            "--set", "device=cpu", "--set", "data.clean_stale_shm=false", "--set", "mlflow=false",
            "--set", "eval_batches=2", "--set", "log_every=5", *more]


@pytest.fixture(scope="module")
def dry(inputs, model, data_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft-out")
    code, text = finetune(*flags(inputs, model, data_config, out, "--dry-run"))
    assert code == 0, text[-3000:]
    return out, text


REGISTERED = "tiny-support"


def mlflow_env(root: Path) -> dict[str, str]:
    """A local sqlite registry (the full mlflow package), its artifacts under root."""
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "MLFLOW_EXPERIMENT_NAME": "finetunes",
            "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def trained(dry, inputs, model, data_config):
    """The same command without --dry-run, registering the export in a sqlite MLflow registry."""
    import mlflow

    out, _ = dry
    assert not (out / "run" / "checkpoints").exists()  # the dry run trained nothing
    env = mlflow_env(out)
    # Artifacts under tmp, not in the working directory (sqlite stores default to ./mlruns).
    mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).create_experiment(
        "finetunes", artifact_location=(out / "artifacts").as_uri())
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        code, text = finetune(*flags(inputs, model, data_config, out, "--register-to", REGISTERED))
    assert code == 0, text[-3000:]
    return out, text


def test_dry_run_prints_rows_lengths_packing_and_cost(dry, inputs):
    _, text = dry
    n_rows = inputs[1]
    read, kept, rejected = map(int, re.search(r"rows\s+([\d,]+) read, ([\d,]+) kept, ([\d,]+) rejected",
                                              text).groups())
    assert read == n_rows and kept + rejected == n_rows
    for (stage, reason), n in EXPECTED.items():
        assert re.search(rf"{stage}\s+{reason}\s+{n}\n", text), (stage, reason)
    assert re.search(r"tokens\s+min \d+\s+p50 [\d.]+\s+p90 [\d.]+\s+p99 [\d.]+\s+max \d+ per example", text)
    assert re.search(r"targets\s+[\d,]+ target tokens per epoch", text)
    assert re.search(r"packing\s+\d+ windows: [\d.]+% tokens, [\d.]+% targets \(one example per window", text)
    assert re.search(rf"training\s+{STEPS} steps x 8 windows of {SEQ_LEN}", text)
    assert re.search(r"estimate\s+[\d,]+ parameters on 1 x h100 .*GPU-hours.*\$", text)


def test_every_row_is_kept_or_rejected_with_its_reason(spark, dry, inputs):
    out, _ = dry
    rejects = Counter((r.stage, r.reason) for r in tables.read(spark, str(out / "tables" / "rejects")).collect())
    assert rejects == EXPECTED  # the generated conversations are all kept
    manifest = json.loads((out / "manifest.json").read_text())["stages"]
    assert manifest["etl"]["rows_in"] == inputs[1]
    assert manifest["tokenize"]["rows_out"] + sum(EXPECTED.values()) == inputs[1]
    deduped = {r.id: r for r in tables.read(spark, str(out / "tables" / "deduped")).collect()}
    assert deduped["ok-1"].messages[0].content == "Where is my parcel? Mail me at <EMAIL>"
    assert [m.role for m in deduped["ok-2"].messages] == ["system", "user", "assistant"]
    dataset = json.loads((out / "shards" / "dataset.json").read_text())
    assert dataset["format"] == "tokenmill-mds-sft-v1" and dataset["seq_len"] == SEQ_LEN
    assert sum(s["examples"] for s in dataset["splits"].values()) == manifest["tokenize"]["rows_out"]


def assert_export_matches_checkpoint(run: Path, tokens) -> None:
    """The Hugging Face export (opened by transformers) gives the run's checkpoint's logits."""
    import torch
    from transformers import AutoModelForCausalLM

    from tokenmill.train.export import load_from_checkpoint

    export = AutoModelForCausalLM.from_pretrained(run / "hf").eval()
    ours, _ = load_from_checkpoint(run)
    with torch.no_grad():
        torch.testing.assert_close(export(tokens).logits, ours(tokens), rtol=1e-5, atol=1e-5)


def safetensors_of(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def test_finetune_trains_exports_and_the_model_generates(trained):
    from transformers import AutoTokenizer

    out, text = trained
    for stage in ("etl", "dedup", "tokenize", "shards"):
        assert f"[{stage}] up to date" in text  # made by the dry run
    assert "preflight: ready" in text
    evals = [e["val_loss"] for e in read_jsonl(out / "run" / "events.jsonl") if e["event"] == "eval"]
    assert len(evals) >= 3 and evals[-1] < evals[0] - 0.5, evals
    hf = out / "run" / "hf"
    assert f"model      {hf}" in text
    tok = AutoTokenizer.from_pretrained(hf)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Order 1234: where is my lamp from Oslo?"}],
                                     add_generation_prompt=True, return_tensors="pt")
    assert_export_matches_checkpoint(out / "run", prompt)


def test_the_registered_version_loads_from_the_local_registry_and_generates(trained, monkeypatch):
    import mlflow

    out, text = trained
    for k, v in mlflow_env(out).items():
        monkeypatch.setenv(k, v)
    assert f"registered {REGISTERED} version 1 in sqlite:///" in text
    version = mlflow.MlflowClient().get_model_version(REGISTERED, "1")
    manifest_sha = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert version.tags["tokenmill.lineage.data_manifest_sha256"] == manifest_sha
    prompt = "Where is my parcel?"
    answer = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/1").predict([prompt], params={"max_new_tokens": 6})
    assert answer[0].startswith(prompt) and len(answer[0]) > len(prompt)


def test_a_rerun_is_up_to_date_everywhere(trained, inputs, model, data_config):
    out, _ = trained
    code, text = finetune(*flags(inputs, model, data_config, out))
    assert code == 0, text[-3000:]
    assert all(f"[{s}] up to date" in text for s in ("etl", "dedup", "tokenize", "shards"))
    assert f"[train] up to date: {out / 'run'} finished step {STEPS}" in text


def test_continued_pretraining_trains_on_plain_text_with_the_models_tokenizer(model, tmp_path):
    import torch

    from tokenmill.sample.prose import news_story
    from tokenmill.shards.reader import iter_split

    rng = random.Random(5)
    docs = tmp_path / "news.jsonl"
    docs.write_text("".join(json.dumps({"id": f"n{i}", "text": news_story(rng)[0]}) + "\n" for i in range(60)))
    out = tmp_path / "out"
    code, text = finetune("--model", str(model), "--data", str(docs), "--output", str(out), "--task", "continued",
                          "--seq-len", "64", "--steps", "3", "--lr", "1e-3", "--nproc", "1",
                          "--data-set", "etl.pii.enabled=false", "--set", "device=cpu",
                          "--set", "data.clean_stale_shm=false", "--set", "mlflow=false", "--set", "eval_batches=1")
    assert code == 0, text[-3000:]
    dataset = json.loads((out / "shards" / "dataset.json").read_text())
    assert dataset["format"] == "tokenmill-mds-v1" and dataset["seq_len"] == 64  # plain packed text, no loss mask
    assert dataset["tokenizer_sha256"] == hashlib.sha256((model / "tokenizer.json").read_bytes()).hexdigest()
    end = [e for e in read_jsonl(out / "run" / "events.jsonl") if e["event"] == "end"]
    assert end and end[-1]["step"] == 3
    # Trained from the base: every weight moved, but only as far as 3 AdamW steps at lr 1e-3 go
    # (each at most about lr per step); a fresh initialisation would be ~0.1 away.
    base, after = safetensors_of(model), safetensors_of(out / "run" / "hf")
    assert set(after) == set(base)
    moved = {name: (after[name] - base[name]).abs().max().item() for name in base}
    assert max(moved.values()) < 3 * 1e-3 * 2, moved
    assert min(moved.values()) > 0, moved
    (sequence,) = iter_split(out / "shards" / "train", limit=1)
    assert_export_matches_checkpoint(out / "run", torch.tensor([sequence["tokens"].tolist()]))


@pytest.mark.parametrize("bad, message", [
    (["--steps", "0"], "argument --steps: must be a positive int, got '0'"),
    (["--epochs", "1", "--steps", "3"], "argument --steps: not allowed with argument --epochs"),
    (["--task", "poems"], "argument --task: invalid choice: 'poems'"),
])
def test_a_bad_flag_is_one_line(bad, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["finetune", "--model", str(tmp_path), "--data", str(tmp_path), "--output", str(tmp_path), *bad])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err


def test_a_bad_input_is_one_line(model, tmp_path, capsys):
    assert cli.main(["finetune", "--model", str(tmp_path), "--data", str(tmp_path), "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"tokenmill finetune: error: --model: {tmp_path} has no config.json; "
                                       "give a Hugging Face model folder\n")
    assert cli.main(["finetune", "--model", str(model), "--data", str(tmp_path / "nope"), "--output",
                     str(tmp_path)]) == 2
    assert "--data:" in capsys.readouterr().err


def test_epochs_become_steps_over_the_train_windows(tmp_path):
    from tokenmill.finetune import FinetuneOptions, steps_for

    opts = FinetuneOptions(model=tmp_path, data=("x",), output=tmp_path, epochs=2.5)
    assert steps_for(opts, train_windows=100, global_batch=8) == 32  # ceil(250 / 8)
    assert steps_for(FinetuneOptions(model=tmp_path, data=("x",), output=tmp_path), 100, 8) == 13
    assert steps_for(FinetuneOptions(model=tmp_path, data=("x",), output=tmp_path, steps=7), 100, 8) == 7


def test_the_data_card_has_a_fine_tuning_section(dry):
    from tokenmill.manifest import Manifest
    from tokenmill.report.card import render
    from tokenmill.report.data import CardData, finetune_data

    out, _ = dry
    section = finetune_data(Manifest.load(out))
    assert section.ok and section.data["rows_in"] == sum(EXPECTED.values()) + section.data["examples"]
    assert {(r["stage"], r["reason"]): r["rows"] for r in section.data["rejects"]} == EXPECTED
    html = render(CardData(out=str(out), sections={"finetune": section}))
    assert "<h2>Fine-tuning data</h2>" in html
    assert "longer_than_seq_len" in html and "one example per window" in html and "p99" in html
    assert finetune_data(Manifest(out / "elsewhere.json")) is None  # not a chat run: no such section


def test_configs_from_presets_and_flags(tmp_path):
    from tokenmill.finetune import FinetuneOptions, run_config, train_config

    chat = FinetuneOptions(model=tmp_path / "m", data=("d1", "d2"), output=tmp_path / "out", task="instruction",
                           seq_len=512, lr=1e-4, epochs=2, method="lora", train_set=("lora.rank=4",))
    cfg = run_config(chat)
    assert (cfg.chat.task, cfg.tokenize.seq_len, cfg.tokenize.tokenizer) == ("instruction", 512, str(tmp_path / "m"))
    assert [i.path for i in cfg.inputs] == ["d1", "d2"] and cfg.output == str(tmp_path / "out")
    train = train_config(chat, train_windows=40)
    assert (train.max_steps, train.eval_every, train.optim.warmup_steps) == (10, 2, 2)  # 2 x 40 / 8 windows
    # A longer run: five evals (every 22 steps), the preset's 20 warmup steps (under a fifth of the run).
    long = train_config(chat, train_windows=440)
    assert (long.max_steps, long.eval_every, long.optim.warmup_steps) == (110, 22, 20)
    assert (train.optim.lr, train.method, train.lora.rank, train.export_hf) == (1e-4, "lora", 4, True)
    assert train.run_dir == str(tmp_path / "out" / "run") and train.data.shards == str(tmp_path / "out" / "shards")
    continued = run_config(FinetuneOptions(model=tmp_path / "m", data=("d",), output=tmp_path, task="continued",
                                           seq_len=256))
    assert continued.chat is None and continued.tokenize.seq_len == 256


# --- the Databricks notebook ----------------------------------------------------------------


def notebook_values(inputs, model, data_config, out: Path, dry_run: str) -> dict[str, str]:
    """The widgets that match flags(): the notebook calls the command's own steps."""
    return {"model": str(model), "data": str(inputs[0]), "output": str(out), "seq_len": str(SEQ_LEN),
            "steps": str(STEPS), "lr": "3e-3", "nproc": "1", "data_config": str(data_config),
            "train_overrides": "device=cpu; data.clean_stale_shm=false; mlflow=false; eval_batches=2; log_every=5",
            "register_to": REGISTERED, "dry_run": dry_run}


def test_the_notebook_finds_the_commands_run_up_to_date_and_registered(spark, trained, inputs, model, data_config,
                                                                        monkeypatch):
    from test_notebooks import run_notebook

    out, _ = trained
    for k, v in mlflow_env(out).items():
        monkeypatch.setenv(k, v)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):  # stage logs go to stderr
        _, shown = run_notebook("06_finetune", spark, notebook_values(inputs, model, data_config, out, "false"))
    text = printed.getvalue()
    stages = shown.frames()[0].set_index("stage")
    manifest = json.loads((out / "manifest.json").read_text())["stages"]
    assert list(stages.index) == ["etl", "dedup", "tokenize", "shards"]
    assert stages.loc["etl", "rows_in"] == inputs[1] == manifest["etl"]["rows_in"]
    assert all(f"[{s}] up to date" in text for s in ("etl", "dedup", "tokenize", "shards"))
    assert f"[train] up to date: {out / 'run'} finished step {STEPS}" in text
    assert f"registered {REGISTERED} version 1 in sqlite:///" in text  # the command's registration, not a second one


def test_the_notebook_stops_after_a_dry_run(spark, dry, inputs, model, data_config, tmp_path):
    from test_notebooks import NotebookExit, run_notebook

    out, _ = dry
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(NotebookExit, match="dry run"):
        run_notebook("06_finetune", spark, {**notebook_values(inputs, model, data_config, out, "true"),
                                            "register_to": ""})
    assert re.search(r"rows\s+[\d,]+ read, [\d,]+ kept, [\d,]+ rejected", printed.getvalue())
