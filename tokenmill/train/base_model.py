"""Starting from an open model: check a Hugging Face folder against the run, before any step.

``prepare(init_from, spec, shards)`` reads config.json and the safetensors
headers (never the weights) and fails with one line when the model is not
supported, a shard is missing, a tensor's shape does not fit, the shards use
another tokenizer or a longer context. The launcher runs it before starting
any rank; every rank runs it again before loading its part of the weights.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from tokenmill.errors import UserError
from tokenmill.run_dir import RunDir
from tokenmill.train.config import ModelConfig, ModelSpec
from tokenmill.train.hf_adapter import family_of, model_config_from_hf
from tokenmill.typed_config import ConfigError

if TYPE_CHECKING:
    from tokenmill.train.hf_io import HFCheckpoint

# hf_io (and torch with it) is imported where a base model is read: the launcher of a
# run from scratch checks its config without starting torch.


@dataclass(frozen=True)
class BaseModel:
    ckpt: HFCheckpoint
    family: str
    model_cfg: ModelConfig
    dtype: str  # the checkpoint's weights dtype, e.g. bfloat16

    @property
    def root(self) -> Path:
        return self.ckpt.root


def prepare(init_from: str, spec: ModelSpec, info) -> BaseModel:
    """The base model's config for these shards (``info``: ShardsInfo), every check done."""
    from tokenmill.train.hf_io import check_weights, open_checkpoint

    check_spec_is_default(spec)
    ckpt = open_checkpoint(init_from)
    where = str(ckpt.root / "config.json")
    family = family_of(ckpt.config, where)
    model_cfg = model_config_from_hf(ckpt.config, info.seq_len, spec.attention, where)
    check_against_shards(ckpt, model_cfg, info)
    dtype = check_weights(ckpt, model_cfg, family)
    return BaseModel(ckpt, family, model_cfg, dtype)


def resolve(cfg, info) -> tuple[Optional[BaseModel], ModelConfig]:
    """(base model or None, the model this run trains) for a TrainConfig and its shards."""
    from tokenmill.train import data

    cfg.check_method()
    if not cfg.init_from:
        return None, data.resolve_model(cfg.model, info)
    base = prepare(cfg.init_from, cfg.model, info)
    if cfg.method == "full":
        return base, base.model_cfg
    try:
        return base, dataclasses.replace(base.model_cfg, lora=cfg.lora)
    except ConfigError as exc:
        raise UserError(f"{exc} ({base.family} at {base.root})") from None


def weights_sha256(ckpt: HFCheckpoint) -> str:
    """sha256 over the checkpoint's safetensors files (names and bytes, in name order)."""
    import hashlib

    h = hashlib.sha256()
    for file in sorted(set(ckpt.files.values())):
        h.update(file.name.encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
    return h.hexdigest()


def check_spec_is_default(spec: ModelSpec) -> None:
    """With init_from the architecture is the checkpoint's: a model field set in YAML would be ignored."""
    default = ModelSpec()
    for f in dataclasses.fields(ModelSpec):
        if f.name in ("attention", "vocab_size", "seq_len"):
            continue
        if getattr(spec, f.name) != getattr(default, f.name):
            raise UserError(
                f"model.{f.name} is set, but init_from gives the architecture (its config.json); "
                f"remove model.{f.name} from the trainer config"
            )


def check_against_shards(ckpt: HFCheckpoint, cfg: ModelConfig, info) -> None:
    from tokenmill.hashing import file_sha256

    root = ckpt.root
    if info.vocab_size > cfg.vocab_size:
        raise UserError(
            f"the shards' tokenizer has ids up to {info.vocab_size - 1} but {root} has a vocabulary of "
            f"{cfg.vocab_size}: tokenize with the model's own tokenizer (tokenize.tokenizer: {root})"
        )
    if cfg.context_len is not None and info.seq_len > cfg.context_len:
        raise UserError(
            f"the shards' seq_len {info.seq_len} is longer than the model's context ({cfg.context_len} "
            f"tokens in config.json): rebuild the shards with tokenize.seq_len <= {cfg.context_len}"
        )
    window = ckpt.config.get("sliding_window")
    if window and ckpt.config.get("use_sliding_window", True) and info.seq_len > window:
        raise UserError(f"{root}: sliding-window attention ({window} tokens) is not supported for seq_len "
                        f"{info.seq_len}; use seq_len <= {window}")
    if not ckpt.tokenizer_path.is_file():
        raise UserError(f"{root}: no tokenizer.json, so the shards' tokenizer cannot be checked against it")
    sha = file_sha256(ckpt.tokenizer_path)
    if info.tokenizer_sha256 and sha != info.tokenizer_sha256:
        raise UserError(
            f"the shards were made with another tokenizer (sha256 {info.tokenizer_sha256[:12]}) than "
            f"{ckpt.tokenizer_path} ({sha[:12]}): rerun the pipeline with tokenize.tokenizer: {root}"
        )


def copy_metadata(base: BaseModel, run_dir: Path) -> Path:
    """Keep the base model's config and tokenizer files with the run (export writes them back)."""
    from tokenmill.train.hf_io import METADATA_FILES

    target = RunDir(run_dir).base
    target.mkdir(parents=True, exist_ok=True)
    for name in METADATA_FILES:
        source = base.root / name
        if source.is_file():
            shutil.copyfile(source, target / name)
    return target


def load_pretrained(root: str | Path, seq_len: int | None = None, attention=None, device: str = "cpu"):
    """(model in eval mode, family) from a Hugging Face folder, in this process (generate, tests).

    ``seq_len`` defaults to the model's context length, capped at 4096 to keep the
    position tables small.
    """
    import torch

    from tokenmill.train.config import AttentionConfig
    from tokenmill.train.hf_io import check_weights, load_into, open_checkpoint
    from tokenmill.train.model import GPT

    ckpt = open_checkpoint(root)
    where = str(ckpt.root / "config.json")
    family = family_of(ckpt.config, where)
    context = model_config_from_hf(ckpt.config, 1, AttentionConfig(), where).context_len or 2048
    cfg = model_config_from_hf(ckpt.config, seq_len or min(context, 4096), attention or AttentionConfig(), where)
    check_weights(ckpt, cfg, family)
    with torch.device("meta"):
        model = GPT(cfg)
    model.to_empty(device=device)
    model.tie_weights()
    load_into(model, ckpt, family)
    return model.eval(), family
