"""``tokenmill export``: consolidated safetensors weights from a sharded checkpoint.

Writes ``OUT/model.safetensors``, ``OUT/config.json`` (model config, EOS/BOS,
step) and ``OUT/tokenizer.json``. Runs in one process on CPU: DCP reads the
shards of any number of ranks into the full tensors.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from tokenmill.errors import UserError

WEIGHTS = "model.safetensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run dir, or run_dir/checkpoints/step_N")
    parser.add_argument("--out", required=True, help="output dir")


def run_dir_of(checkpoint_dir: Path) -> Path:
    return checkpoint_dir.parent.parent  # <run_dir>/checkpoints/step_N


def load_from_checkpoint(path: Path):
    """(model on CPU in eval mode, trainer state) from a checkpoint or run dir."""
    from tokenmill.train.checkpoint import load_model_weights, read_trainer_state, resolve_checkpoint
    from tokenmill.train.config import ModelConfig
    from tokenmill.train.model import GPT

    ckpt = resolve_checkpoint(path)
    state = read_trainer_state(ckpt)
    model = GPT(ModelConfig(**state["model_config"]))
    load_model_weights(ckpt, model)
    state["checkpoint"] = ckpt
    return model.eval(), state


def export(checkpoint: Path, out: Path) -> Path:
    from safetensors.torch import save_file

    model, state = load_from_checkpoint(checkpoint)
    run_dir = run_dir_of(state["checkpoint"])
    tokenizer = run_dir / "tokenizer.json"
    if not tokenizer.exists():
        raise UserError(f"no tokenizer.json in {run_dir}: it is copied there when training starts")
    tensors = model.state_dict()
    if model.cfg.tie_embeddings:
        # safetensors stores no shared tensors; the head is the embedding.
        del tensors["head.weight"]
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt", "step": str(state["step"])})
    manifest = json.loads((run_dir / "dataset.json").read_text()) if (run_dir / "dataset.json").exists() else {}
    config = {
        "architecture": "tokenmill-gpt",
        "model": state["model_config"],
        "eos_id": state.get("eos_id", manifest.get("eos_id")),
        "bos_id": manifest.get("bos_id"),
        "step": state["step"],
        "tokens": state["tokens"],
        "checkpoint": str(state["checkpoint"]),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copyfile(tokenizer, out / "tokenizer.json")
    return out


def load_export(out: Path):
    """(model, config dict) from an export dir."""
    from safetensors.torch import load_file

    from tokenmill.train.config import ModelConfig
    from tokenmill.train.model import GPT

    config = json.loads((out / "config.json").read_text())
    model = GPT(ModelConfig(**config["model"]))
    tensors = load_file(str(out / WEIGHTS))
    if model.cfg.tie_embeddings:
        tensors["head.weight"] = tensors["embed.weight"]
    model.load_state_dict(tensors)
    return model.eval(), config


def main(args: argparse.Namespace) -> int:
    out = export(Path(args.checkpoint), Path(args.out))
    print(f"exported {out / WEIGHTS}")
    return 0
