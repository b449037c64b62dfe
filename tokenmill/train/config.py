"""The trainer's frozen, typed config (one YAML file, see configs/train_*.yaml).

No torch import here: the launcher checks configs before starting any rank.

``model.vocab_size`` and ``model.seq_len`` may be left out (null): they are
then read from the shards' ``dataset.json``. When given, they must match it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from tokenmill.run_dir import RunDir
from tokenmill.typed_config import from_dict, load_yaml, require, to_dict


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1's RoPE frequency scaling (``rope_scaling.rope_type: llama3``)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_context: int = 8192  # original_max_position_embeddings

    def __post_init__(self):
        require(self.factor > 0, "factor", f"must be > 0, got {self.factor}")
        require(self.high_freq_factor > self.low_freq_factor > 0, "high_freq_factor",
                f"must be > low_freq_factor > 0, got {self.high_freq_factor} and {self.low_freq_factor}")
        require(self.original_context > 0, "original_context", f"must be > 0, got {self.original_context}")


@dataclass(frozen=True)
class AttentionConfig:
    # Attend only within each document of a packed sequence (documents end at
    # EOS) and restart positions there. Off: causal over the whole window.
    doc_mask: bool = False


LORA_GROUPS = {
    "attention": ("q", "k", "v", "o"),
    "mlp": ("gate", "up", "down"),
    "all": ("q", "k", "v", "o", "gate", "up", "down"),
}
LORA_LAYERS = LORA_GROUPS["all"]


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (LoRA): W x + (alpha / rank) B A x on the target projections."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    # Projections: q k v o gate up down, or a group: attention, mlp, all (every linear layer but the head).
    targets: tuple[str, ...] = ("attention",)

    def __post_init__(self):
        require(self.rank > 0, "rank", f"must be > 0, got {self.rank}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(len(self.targets) > 0, "targets", "must name at least one projection")
        for t in self.targets:
            require(t in LORA_GROUPS or t in LORA_LAYERS, "targets",
                    f"{t!r} is not a projection; choose from {', '.join(LORA_LAYERS)} or {', '.join(LORA_GROUPS)}")

    @property
    def layers(self) -> tuple[str, ...]:
        """The targeted projections, groups expanded, in model order."""
        named = {layer for t in self.targets for layer in LORA_GROUPS.get(t, (t,))}
        return tuple(layer for layer in LORA_LAYERS if layer in named)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclass(frozen=True)
class _Architecture:
    """The architecture fields that the trainer's ModelConfig and the YAML's ModelSpec share."""

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    vocab_size: Optional[int] = None
    seq_len: Optional[int] = None
    mlp_ratio: float = 4.0
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    position: Literal["alibi", "rope"] = "alibi"
    mlp: Literal["gelu", "swiglu"] = "gelu"
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    n_kv_heads: Optional[int] = None  # grouped-query attention; None: one per query head
    d_head: Optional[int] = None  # None: d_model // n_heads
    d_ff: Optional[int] = None  # MLP hidden width; None: from mlp_ratio
    rope_scaling: Optional[RopeScaling] = None
    qkv_bias: bool = False  # biases on the q/k/v projections (Qwen2)


@dataclass(frozen=True)
class ModelConfig(_Architecture):
    """Architecture. ``vocab_size`` and ``seq_len`` must match the shards."""

    vocab_size: int = 512
    seq_len: int = 64
    context_len: Optional[int] = None  # longest context the model was made for (imports)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    lora: Optional[LoraConfig] = None  # adapters on these projections; the rest is frozen

    def __post_init__(self):
        require(self.d_model > 0, "d_model", f"must be > 0, got {self.d_model}")
        require(self.n_layers > 0, "n_layers", f"must be > 0, got {self.n_layers}")
        require(self.n_heads > 0, "n_heads", f"must be > 0, got {self.n_heads}")
        if self.d_head is None:
            require(
                self.d_model % self.n_heads == 0,
                "n_heads",
                f"must divide d_model ({self.d_model}), got {self.n_heads}",
            )
        else:
            require(self.d_head > 0, "d_head", f"must be > 0, got {self.d_head}")
        require(
            self.n_kv_heads is None or (self.n_kv_heads > 0 and self.n_heads % self.n_kv_heads == 0),
            "n_kv_heads",
            f"must divide n_heads ({self.n_heads}), got {self.n_kv_heads}",
        )
        require(self.d_ff is None or self.d_ff > 0, "d_ff", f"must be > 0, got {self.d_ff}")
        require(self.vocab_size > 1, "vocab_size", f"must be > 1, got {self.vocab_size}")
        require(self.seq_len > 0, "seq_len", f"must be > 0, got {self.seq_len}")
        require(self.mlp_ratio > 0, "mlp_ratio", f"must be > 0, got {self.mlp_ratio}")
        if self.position == "rope":
            require(self.head_dim % 2 == 0, "position", "rope needs an even head dim")
        else:
            require(self.rope_scaling is None, "rope_scaling", "applies only to position: rope")
        if self.lora is not None and self.mlp != "swiglu":
            require("gate" not in self.lora.layers, "lora.targets",
                    "'gate' names no layer of this model (its GELU MLP has up and down only)")

    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def d_hidden(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        # SwiGLU has three matrices instead of two: scale its width by 2/3 so
        # the parameter count matches a GELU MLP of the same ratio; round up
        # to a multiple of 64 for efficient matmuls.
        width = self.mlp_ratio * self.d_model
        if self.mlp == "swiglu":
            width = 2 * width / 3
        return int(math.ceil(width / 64) * 64)


@dataclass(frozen=True)
class ModelSpec(_Architecture):
    """ModelConfig as written in YAML: vocab/seq_len may come from the shards.

    With ``init_from`` the architecture comes from the checkpoint's
    config.json; only ``attention`` (and vocab/seq_len checks) apply then.
    """

    attention: AttentionConfig = field(default_factory=AttentionConfig)


@dataclass(frozen=True)
class DataConfig:
    shards: str = ""  # local dir or streaming URI holding dataset.json, train/, val/
    cache_dir: str = ""  # local cache for remote shards; default <run_dir>/cache
    num_workers: int = 0
    shuffle_seed: int = 17
    # Pinned so the sample order does not depend on how many nodes/ranks read
    # the data: a checkpoint from 2 ranks resumes on 1 with the same order.
    num_canonical_nodes: int = 1
    predownload: Optional[int] = None
    # Free the shared memory killed runs left before starting: streaming's
    # segments of this user that no live process holds (other runs' stay).
    clean_stale_shm: bool = True

    def __post_init__(self):
        require(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")
        require(
            self.num_canonical_nodes >= 1,
            "num_canonical_nodes",
            f"must be >= 1, got {self.num_canonical_nodes}",
        )


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 6e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at max_steps
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, ...] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping

    def __post_init__(self):
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        require(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(len(self.betas) == 2, "betas", f"must be two numbers, got {list(self.betas)}")
        require(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = 0  # 0: not by steps
    every_minutes: float = 0.0  # 0: not by time
    keep_last: int = 3
    autoresume: bool = True  # load the latest complete checkpoint at start

    def __post_init__(self):
        require(self.every_steps >= 0, "every_steps", f"must be >= 0, got {self.every_steps}")
        require(self.every_minutes >= 0, "every_minutes", f"must be >= 0, got {self.every_minutes}")
        require(self.keep_last >= 1, "keep_last", f"must be >= 1, got {self.keep_last}")


@dataclass(frozen=True)
class ExportConfig:
    """The Hugging Face folder written by ``tokenmill export`` or ``export_hf``."""

    # Weights' dtype: "auto" keeps the base model's (float32 for models trained
    # from scratch); serving usually wants bfloat16.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_shard_size: str = "5GB"  # safetensors files of at most this size (KB, MB, GB)
    out: str = ""  # default <run_dir>/hf

    def __post_init__(self):
        parse_size(self.max_shard_size, "max_shard_size")


def parse_size(text: str, field_name: str) -> int:
    """'5GB' / '500MB' / '10KB' / '1024' -> bytes (decimal units, as transformers)."""
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "B": 1}
    value = str(text).strip().upper()
    for unit, scale in units.items():
        if value.endswith(unit):
            number = value[: -len(unit)].strip()
            break
    else:
        number, scale = value, 1
    try:
        size = int(float(number) * scale)
    except ValueError:
        size = 0
    require(size > 0, field_name, f"must be a size like 5GB or 500MB, got {text!r}")
    return size


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    # A Hugging Face checkpoint folder to start from (continued pretraining,
    # fine-tuning). A checkpoint in run_dir still wins: a restart resumes it.
    init_from: Optional[str] = None
    # full: train every weight. lora: freeze the base model, train low-rank
    # adapters (needs init_from); checkpoints then hold only the adapters.
    method: Literal["full", "lora"] = "full"
    lora: LoraConfig = field(default_factory=LoraConfig)
    export_hf: bool = False  # write a Hugging Face folder at the end of the run
    export: ExportConfig = field(default_factory=ExportConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    run_dir: str = "runs/tiny"
    seed: int = 1234
    max_steps: int = 100
    # End this run at this step (with a checkpoint) while the schedule still
    # runs to max_steps: for time-limited jobs; the next run resumes.
    stop_at_step: Optional[int] = None
    global_batch_size: int = 8  # sequences per optimizer step, all ranks together
    micro_batch_size: int = 4  # sequences per forward pass on one rank
    # auto: CUDA when visible, else CPU. Tests and CPU-only jobs pin "cpu".
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    activation_checkpointing: bool = False
    compile: bool = False
    on_nonfinite: Literal["stop", "skip"] = "stop"
    max_consecutive_skips: int = 5  # skip mode still stops after this many in a row
    eval_every: int = 0  # 0: only at the end
    eval_batches: int = 4  # micro-batches per rank per eval
    # Answered greedily at each eval (with the chat template on SFT shards), written to
    # events.jsonl ("eval_prompts") and MLflow.
    eval_prompts: tuple[str, ...] = ()
    eval_max_new_tokens: int = 32
    log_every: int = 10
    mlflow: bool = True  # log metrics when mlflow is installed
    peak_flops: Optional[float] = None  # per device, for MFU; default: known GPUs
    record_sample_ids: bool = False  # write seq_ids used per step (to audit resumes)

    def __post_init__(self):
        require(self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}")
        require(
            self.stop_at_step is None or self.stop_at_step >= 1,
            "stop_at_step",
            f"must be >= 1 or null, got {self.stop_at_step}",
        )
        require(self.global_batch_size >= 1, "global_batch_size", f"must be >= 1, got {self.global_batch_size}")
        require(self.micro_batch_size >= 1, "micro_batch_size", f"must be >= 1, got {self.micro_batch_size}")
        require(self.eval_every >= 0, "eval_every", f"must be >= 0, got {self.eval_every}")
        require(self.eval_batches >= 1, "eval_batches", f"must be >= 1, got {self.eval_batches}")
        require(self.log_every >= 1, "log_every", f"must be >= 1, got {self.log_every}")
        require(self.eval_max_new_tokens >= 1, "eval_max_new_tokens", f"must be >= 1, got {self.eval_max_new_tokens}")
        require(
            self.max_consecutive_skips >= 1,
            "max_consecutive_skips",
            f"must be >= 1, got {self.max_consecutive_skips}",
        )

    def check_method(self) -> None:
        """LoRA adapts a base model: it needs one (checked once overrides are applied)."""
        require(self.method != "lora" or bool(self.init_from), "method",
                "lora trains adapters on a base model: set init_from (or pass --init-from DIR)")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)

    @property
    def run(self) -> RunDir:
        """The run folder's layout."""
        return RunDir(self.run_dir)

    def grad_accum(self, world_size: int) -> int:
        """Micro-batches per rank per optimizer step."""
        per_step = self.micro_batch_size * world_size
        require(
            self.global_batch_size % per_step == 0,
            "global_batch_size",
            f"must be a multiple of micro_batch_size x ranks = {self.micro_batch_size} x {world_size}, "
            f"got {self.global_batch_size}",
        )
        return self.global_batch_size // per_step


def load_config(path: str | Path) -> TrainConfig:
    return from_dict(TrainConfig, load_yaml(path))


def model_config(spec: ModelSpec, vocab_size: int, seq_len: int) -> ModelConfig:
    """The concrete architecture once the shards' vocab and seq_len are known."""
    values = to_dict(spec)
    values["vocab_size"] = vocab_size
    values["seq_len"] = seq_len
    return from_dict(ModelConfig, values, "model")
