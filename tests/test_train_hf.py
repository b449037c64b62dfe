"""Open models in and out: tiny transformers-made checkpoints of each family.

Import gives transformers' own logits (1 process, and 2 gloo ranks under
FSDP2); import then export gives back every tensor byte for byte and the same
config.json; models trained from scratch export to folders transformers opens.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from tokenmill.train.base_model import load_pretrained
from tokenmill.train.config import AttentionConfig, ExportConfig, ModelConfig
from tokenmill.train.export import write_hf
from train_fixture import write_hf_model
from tokenmill.train.hf_io import METADATA_FILES, model_fetcher, read_config

from ranks import spawn_ranks

FAMILIES = ["llama", "mistral", "qwen2", "mpt"]


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hf")
    models = {family: write_hf_model(root / family, family, vocab_size=256) for family in FAMILIES}
    # Sharded like the big checkpoints: several files and an index.
    models["llama-sharded"] = write_hf_model(root / "llama-sharded", "llama", vocab_size=256, max_shard_size="40KB")
    return models


def tokens(n_rows: int = 2, length: int = 40) -> torch.Tensor:
    return torch.randint(0, 256, (n_rows, length), generator=torch.Generator().manual_seed(5))


def transformers_logits(path, batch: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(batch).logits


@pytest.mark.parametrize("family", FAMILIES + ["llama-sharded"])
def test_import_gives_transformers_logits(hf_models, family):
    batch = tokens()
    ours, _ = load_pretrained(hf_models[family], seq_len=64)
    with torch.no_grad():
        got = ours(batch)
    torch.testing.assert_close(got, transformers_logits(hf_models[family], batch), rtol=1e-5, atol=1e-5)


def fsdp_import_worker(rank: int, world: int, paths: dict, out: str) -> None:
    """Each rank loads only its shard of every parameter, then runs the same batch."""
    from tokenmill.train.parallelize import build_model
    from tokenmill.train.hf_adapter import family_of, model_config_from_hf
    from tokenmill.train.hf_io import load_into, open_checkpoint

    results = {}
    for name, path in paths.items():
        ckpt = open_checkpoint(path)
        cfg = model_config_from_hf(ckpt.config, 64, AttentionConfig())
        model = build_model(cfg, torch.device("cpu"))
        load_into(model, ckpt, family_of(ckpt.config))
        local_rows = {n: p.to_local().shape[0] for n, p in model.named_parameters()}
        with torch.no_grad():
            results[name] = (model(tokens()), local_rows)
    if rank == 0:
        torch.save(results, out)


def test_sharded_import_on_two_ranks_gives_transformers_logits(hf_models, tmp_path):

    out = str(tmp_path / "logits.pt")
    paths = {f: str(hf_models[f]) for f in FAMILIES}
    spawn_ranks(fsdp_import_worker, paths, out)
    results = torch.load(out)
    for family, (logits, local_rows) in results.items():
        torch.testing.assert_close(logits, transformers_logits(hf_models[family], tokens()), rtol=1e-5, atol=1e-5)
        # Rank 0 holds half of the embedding's rows, not all of them.
        assert local_rows["embed.weight"] == 128, family


def tensors_of(folder) -> dict[str, bytes]:
    """Every tensor's dtype, shape and raw bytes, over all safetensors files of a folder."""
    found = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                t = f.get_tensor(name)
                found[name] = (str(t.dtype), tuple(t.shape), t.contiguous().view(torch.uint8).numpy().tobytes())
    return found


def export_in_memory(path, out, max_shard_size: str = "5GB"):
    """Import a folder and export it again with no training in between."""
    model, family = load_pretrained(path, seq_len=64)
    base = read_config(path)
    files = {n: (path / n).read_bytes() for n in METADATA_FILES if (path / n).is_file()}
    dtype = base.get("dtype") or "float32"
    return write_hf(out, model.cfg, family, base, files, model_fetcher(model),
                    ExportConfig(max_shard_size=max_shard_size), dtype)


@pytest.mark.parametrize("family", FAMILIES + ["llama-sharded"])
def test_import_then_export_is_byte_identical(hf_models, family, tmp_path):
    source = hf_models[family]
    out = export_in_memory(source, tmp_path / "out", "40KB" if family.endswith("sharded") else "5GB")
    assert tensors_of(out) == tensors_of(source)
    assert read_config(out) == read_config(source)  # field by field, every architecture field derived again
    assert (out / "generation_config.json").read_bytes() == (source / "generation_config.json").read_bytes()
    if family.endswith("sharded"):
        index = json.loads((out / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 1
        assert set(index["weight_map"]) == set(tensors_of(source))


def test_export_in_bfloat16_halves_the_weights(hf_models, tmp_path):
    model, family = load_pretrained(hf_models["qwen2"], seq_len=64)
    base = read_config(hf_models["qwen2"])
    out = write_hf(tmp_path / "bf16", model.cfg, family, base, {}, model_fetcher(model),
                   ExportConfig(dtype="bfloat16"), "float32")
    assert read_config(out)["dtype"] == "bfloat16"
    assert {dtype for dtype, _, _ in tensors_of(out).values()} == {"torch.bfloat16"}
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out, dtype="auto").dtype == torch.bfloat16


@pytest.mark.parametrize("kind", [
    dict(norm="rmsnorm", position="rope", mlp="swiglu", n_kv_heads=2, tie_embeddings=False),  # -> Llama
    dict(),  # the MPT-style default -> MptForCausalLM
])
def test_model_trained_from_scratch_exports_to_transformers(kind, tmp_path):
    from tokenmill.train.model import GPT

    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=256, seq_len=64, **kind)
    model = GPT(cfg).eval()
    model.init_weights(3)
    out = write_hf(tmp_path / "scratch", cfg, _family(cfg), None, {}, model_fetcher(model), ExportConfig(),
                   "float32", eos_id=0, bos_id=None)
    config = read_config(out)
    assert config["eos_token_id"] == 0 and config["max_position_embeddings" if kind else "max_seq_len"] == 64
    batch = tokens()
    with torch.no_grad():
        torch.testing.assert_close(transformers_logits(out, batch), model(batch), rtol=1e-5, atol=1e-5)


def _family(cfg):
    from tokenmill.train.hf_adapter import family_for_export

    return family_for_export(cfg)


def test_architectures_transformers_lacks_do_not_export():
    from tokenmill.errors import UserError

    with pytest.raises(UserError, match="no transformers architecture computes position rope"):
        _family(ModelConfig(position="rope"))
    with pytest.raises(UserError, match="MLP width"):
        _family(ModelConfig(mlp_ratio=2.0))


# --- bad inputs: one line, exit 2, before any rank starts ------------------------------


@pytest.fixture(scope="module")
def matching(llama_with_shards):
    """Shards and a Llama checkpoint that uses their tokenizer."""
    return llama_with_shards


def train_cli(tmp_path, shards, init_from, capsys, **config):
    import yaml

    from tokenmill.cli import main

    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "device": "cpu", "max_steps": 2,
                                    "global_batch_size": 4, "micro_batch_size": 4, "mlflow": False, **config}))
    code = main(["train", "--config", str(path), "--shards", str(shards), "--init-from", str(init_from)])
    return code, capsys.readouterr().err.strip()


def break_copy(model, tmp_path, edit):
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    edit(broken)
    return broken


def edit_config(**changes):
    def edit(path):
        config = json.loads((path / "config.json").read_text())
        config.update(changes)
        (path / "config.json").write_text(json.dumps(config))
    return edit


def other_tokenizer(path):
    data = json.loads((path / "tokenizer.json").read_text())
    data["added_tokens"][0]["content"] = "<|other|>"
    (path / "tokenizer.json").write_text(json.dumps(data))


BAD = {
    "unsupported architecture": (edit_config(architectures=["GPT2LMHeadModel"]), "GPT2LMHeadModel is not supported"),
    "shape that does not fit": (edit_config(intermediate_size=100), "gate_proj.weight has shape [128, 64], config.json implies [100, 64]"),
    "vocabulary too small": (edit_config(vocab_size=300), "has a vocabulary of 300"),
    "context too short": (edit_config(max_position_embeddings=16), "longer than the model's context (16"),
    "other tokenizer": (other_tokenizer, "the shards were made with another tokenizer"),
    "no tokenizer": (lambda p: (p / "tokenizer.json").unlink(), "no tokenizer.json"),
    "rope type": (edit_config(rope_scaling={"rope_type": "yarn", "factor": 2.0}), "rope_scaling type 'yarn'"),
    "no weights": (lambda p: (p / "model.safetensors").unlink(), "no model.safetensors"),
    "bad json": (lambda p: (p / "config.json").write_text("{"), "is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_base_model_is_one_line_exit_2(matching, tmp_path, capsys, case):
    shards, model = matching
    edit, message = BAD[case]
    code, err = train_cli(tmp_path, shards, break_copy(model, tmp_path, edit), capsys)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run" / "events.jsonl").exists()  # no rank started


def test_missing_shard_is_one_line_exit_2(matching, tmp_path, capsys):
    shards, _ = matching
    sharded = write_hf_model(tmp_path / "sharded", "llama", vocab_size=512, tokenizer_dir=shards, max_shard_size="40KB")
    next(iter(sorted(sharded.glob("model-*.safetensors")))).unlink()
    code, err = train_cli(tmp_path, shards, sharded, capsys)
    assert code == 2 and "listed in model.safetensors.index.json is missing" in err and len(err.splitlines()) == 1


def test_model_section_with_init_from_is_refused(matching, tmp_path, capsys):
    shards, model = matching
    code, err = train_cli(tmp_path, shards, model, capsys, model={"d_model": 256})
    assert code == 2 and "model.d_model is set, but init_from gives the architecture" in err


def test_init_from_a_missing_folder(matching, tmp_path, capsys):
    shards, _ = matching
    code, err = train_cli(tmp_path, shards, tmp_path / "nope", capsys)
    assert code == 2 and "is not a directory" in err
