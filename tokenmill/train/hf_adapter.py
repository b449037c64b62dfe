"""Hugging Face <-> tokenmill: configs and weight names, both directions side by side.

One table per family says, for each of our parameters, which Hugging Face
tensor holds it and at which row (MPT keeps q, k and v in one ``Wqkv``
tensor, one block of rows each). Import reads it one way, export the other,
so the two cannot drift apart. No weights are permuted: our RoPE rotates
halves as Hugging Face's does.

Families: ``llama`` (LlamaForCausalLM), ``mistral``, ``qwen2`` (same weights
as Llama, Qwen2 with q/k/v biases) and ``mpt`` (MptForCausalLM: ALiBi,
LayerNorm without bias, exact GELU, tied embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tokenmill.errors import UserError
from tokenmill.train.config import AttentionConfig, ModelConfig, RopeScaling
from tokenmill.typed_config import ConfigError

ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "MptForCausalLM": "mpt",
}
FAMILY_ARCHITECTURE = {family: arch for arch, family in ARCHITECTURES.items()}


@dataclass(frozen=True)
class Source:
    """Where one of our parameters lives in a Hugging Face checkpoint."""

    hf_name: str
    row_offset: int = 0  # first row of ours inside that tensor (dim 0)


# --- configs -----------------------------------------------------------------------


def family_of(hf_config: dict, where: str = "config.json") -> str:
    archs = hf_config.get("architectures") or []
    for arch in archs:
        if arch in ARCHITECTURES:
            return ARCHITECTURES[arch]
    shown = ", ".join(archs) if archs else f"model_type {hf_config.get('model_type')!r}"
    raise UserError(f"{where}: {shown} is not supported; supported: {', '.join(ARCHITECTURES)}")


def model_config_from_hf(hf: dict, seq_len: int, attention: AttentionConfig, where: str = "config.json") -> ModelConfig:
    """Our ModelConfig for a Hugging Face config.json, training windows of ``seq_len``."""
    family = family_of(hf, where)
    try:
        values = _mpt_fields(hf, where) if family == "mpt" else _llama_fields(hf, family, where)
        return ModelConfig(**values, seq_len=seq_len, attention=attention)
    except (KeyError, TypeError) as exc:
        raise UserError(f"{where}: missing or malformed field {exc}; is this a complete {family} config?") from None
    except ConfigError as exc:
        raise UserError(f"{where}: {exc}") from None


def _llama_fields(hf: dict, family: str, where: str) -> dict:
    def unsupported(condition: bool, what: str) -> None:
        if condition:
            raise UserError(f"{where}: {what} is not supported")

    unsupported(hf.get("hidden_act", "silu") != "silu", f"hidden_act {hf.get('hidden_act')!r} (only silu)")
    unsupported(bool(hf.get("attention_bias", False)), "attention_bias: true (bias on q/k/v and o)")
    unsupported(bool(hf.get("mlp_bias", False)), "mlp_bias: true")
    heads = hf["num_attention_heads"]
    return {
        "d_model": hf["hidden_size"],
        "n_layers": hf["num_hidden_layers"],
        "n_heads": heads,
        "n_kv_heads": hf.get("num_key_value_heads") or heads,
        "d_head": hf.get("head_dim"),
        "d_ff": hf["intermediate_size"],
        "vocab_size": hf["vocab_size"],
        "norm": "rmsnorm",
        "norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
        "position": "rope",
        "rope_theta": float(hf.get("rope_theta", 10000.0)),
        "rope_scaling": _rope_scaling(hf.get("rope_scaling"), where),
        "mlp": "swiglu",
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "qkv_bias": family == "qwen2",
        "context_len": hf.get("max_position_embeddings"),
    }


def _rope_scaling(scaling: Optional[dict], where: str) -> Optional[RopeScaling]:
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return None
    if kind != "llama3":
        raise UserError(f"{where}: rope_scaling type {kind!r} is not supported (default and llama3 are)")
    return RopeScaling(
        factor=float(scaling["factor"]),
        low_freq_factor=float(scaling["low_freq_factor"]),
        high_freq_factor=float(scaling["high_freq_factor"]),
        original_context=int(scaling["original_max_position_embeddings"]),
    )


def _mpt_fields(hf: dict, where: str) -> dict:
    attn = hf.get("attn_config") or {}
    problems = [
        (not attn.get("alibi", False), "attn_config.alibi: false (learned positions)"),
        (attn.get("alibi_bias_max", 8) != 8, f"attn_config.alibi_bias_max {attn.get('alibi_bias_max')} (only 8)"),
        (attn.get("clip_qkv") is not None, "attn_config.clip_qkv"),
        (bool(attn.get("qk_ln")), "attn_config.qk_ln"),
        (attn.get("softmax_scale") is not None, "attn_config.softmax_scale"),
        (not hf.get("no_bias", True), "no_bias: false"),
        (hf.get("logit_scale") is not None, "logit_scale"),
        (hf.get("expansion_ratio", 4) != 4, f"expansion_ratio {hf.get('expansion_ratio')} (transformers uses 4)"),
        (not hf.get("tie_word_embeddings", True), "tie_word_embeddings: false"),
    ]
    for bad, what in problems:
        if bad:
            raise UserError(f"{where}: MPT with {what} is not supported")
    return {
        "d_model": hf["d_model"],
        "n_layers": hf["n_layers"],
        "n_heads": hf["n_heads"],
        "d_ff": 4 * hf["d_model"],
        "vocab_size": hf["vocab_size"],
        "norm": "layernorm",
        "norm_eps": float(hf.get("layer_norm_epsilon", 1e-5)),
        "position": "alibi",
        "mlp": "gelu",
        "tie_embeddings": True,
        "context_len": hf.get("max_seq_len"),
    }


def family_for_export(cfg: ModelConfig) -> str:
    """The transformers architecture that computes exactly what ``cfg`` computes."""
    if cfg.position == "rope" and cfg.norm == "rmsnorm" and cfg.mlp == "swiglu":
        return "qwen2" if cfg.qkv_bias else "llama"
    if cfg.position == "alibi" and cfg.norm == "layernorm" and cfg.mlp == "gelu" and not cfg.qkv_bias:
        problems = [
            (cfg.d_hidden != 4 * cfg.d_model, f"an MLP width of {cfg.d_hidden} (MPT's is 4 x d_model)"),
            (not cfg.tie_embeddings, "untied embeddings"),
            (cfg.kv_heads != cfg.n_heads, "grouped-query attention"),
            (cfg.head_dim * cfg.n_heads != cfg.d_model, "d_head x n_heads != d_model"),
        ]
        for bad, what in problems:
            if bad:
                raise UserError(f"cannot export as MptForCausalLM: transformers' MPT has no {what}")
        return "mpt"
    raise UserError(
        f"no transformers architecture computes position {cfg.position} + {cfg.norm} + {cfg.mlp}: "
        f"train rope + rmsnorm + swiglu (Llama) or alibi + layernorm + gelu (MPT) to export"
    )


def hf_config(cfg: ModelConfig, family: str, base: Optional[dict], dtype: str, eos_id, bos_id) -> dict:
    """config.json for ``cfg``: the base model's fields, every architecture field from ``cfg``.

    ``base`` is the imported model's config.json (kept as it was, so fields we
    do not model — token ids, sliding window, initializer range — survive);
    None for a model trained from scratch, which gets transformers' defaults.
    """
    derived = _mpt_config(cfg) if family == "mpt" else _llama_config(cfg, family)
    if base is None:
        base = _transformers_defaults(family, derived)
        base.update({"eos_token_id": eos_id, "bos_token_id": bos_id})
    out = dict(base)
    for key, value in derived.items():
        if key in _OPTIONAL_KEYS and key not in base:
            continue  # this transformers release writes no such key for the family
        if key == "attn_config":
            value = {**base.get("attn_config", {}), **value}
        out[key] = value
    out["architectures"] = [FAMILY_ARCHITECTURE[family]]
    out["model_type"] = family
    dtype_key = "torch_dtype" if "torch_dtype" in base and "dtype" not in base else "dtype"
    out[dtype_key] = dtype
    return out


_OPTIONAL_KEYS = {"head_dim", "rope_scaling", "attention_bias", "mlp_bias", "tie_word_embeddings"}


def _llama_config(cfg: ModelConfig, family: str) -> dict:
    s = cfg.rope_scaling
    scaling = None if s is None else {
        "factor": s.factor, "high_freq_factor": s.high_freq_factor, "low_freq_factor": s.low_freq_factor,
        "original_max_position_embeddings": s.original_context, "rope_type": "llama3",
    }
    values = {
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.d_head if cfg.d_head is not None else (cfg.head_dim if family == "llama" else None),
        "intermediate_size": cfg.d_hidden,
        "vocab_size": cfg.vocab_size,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": scaling,
        "tie_word_embeddings": cfg.tie_embeddings,
        "max_position_embeddings": cfg.context_len or cfg.seq_len,
    }
    if family == "llama":
        values.update({"attention_bias": False, "mlp_bias": False})
    return values


def _mpt_config(cfg: ModelConfig) -> dict:
    return {
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "expansion_ratio": 4,
        "max_seq_len": cfg.context_len or cfg.seq_len,
        "vocab_size": cfg.vocab_size,
        "layer_norm_epsilon": cfg.norm_eps,
        "no_bias": True,
        "logit_scale": None,
        "attn_config": {"alibi": True, "alibi_bias_max": 8, "clip_qkv": None, "qk_ln": False, "softmax_scale": None},
    }


def _transformers_defaults(family: str, derived: dict) -> dict:
    """Every field transformers writes for this family, from its own config class."""
    try:
        import transformers
    except ImportError:  # pragma: no cover - installed with mosaicml-streaming
        raise UserError("exporting a model trained from scratch needs the transformers package") from None
    cls = getattr(transformers, FAMILY_ARCHITECTURE[family].replace("ForCausalLM", "Config"))
    return cls(**derived).to_dict()


# --- weight names ------------------------------------------------------------------


def weight_map(cfg: ModelConfig, family: str) -> dict[str, Source]:
    """Our parameter name -> its place in the Hugging Face checkpoint.

    Tied embeddings have no head entry: the head is the embedding.
    """
    table = _mpt_names(cfg) if family == "mpt" else _llama_names(cfg)
    if not cfg.tie_embeddings:
        table["head.weight"] = Source("lm_head.weight")
    return table


def _llama_names(cfg: ModelConfig) -> dict[str, Source]:
    table = {"embed.weight": Source("model.embed_tokens.weight")}
    for i in range(cfg.n_layers):
        ours, theirs = f"blocks.{i}", f"model.layers.{i}"
        table[f"{ours}.norm_attn.weight"] = Source(f"{theirs}.input_layernorm.weight")
        for name in ("q", "k", "v", "o"):
            table[f"{ours}.attn.{name}.weight"] = Source(f"{theirs}.self_attn.{name}_proj.weight")
        if cfg.qkv_bias:
            for name in ("q", "k", "v"):
                table[f"{ours}.attn.{name}.bias"] = Source(f"{theirs}.self_attn.{name}_proj.bias")
        table[f"{ours}.norm_mlp.weight"] = Source(f"{theirs}.post_attention_layernorm.weight")
        for name in ("gate", "up", "down"):
            table[f"{ours}.mlp.{name}.weight"] = Source(f"{theirs}.mlp.{name}_proj.weight")
    table["norm.weight"] = Source("model.norm.weight")
    return table


def _mpt_names(cfg: ModelConfig) -> dict[str, Source]:
    D = cfg.d_model
    table = {"embed.weight": Source("transformer.wte.weight")}
    for i in range(cfg.n_layers):
        ours, theirs = f"blocks.{i}", f"transformer.blocks.{i}"
        table[f"{ours}.norm_attn.weight"] = Source(f"{theirs}.norm_1.weight")
        for j, name in enumerate(("q", "k", "v")):  # one fused tensor, rows [q; k; v]
            table[f"{ours}.attn.{name}.weight"] = Source(f"{theirs}.attn.Wqkv.weight", row_offset=j * D)
        table[f"{ours}.attn.o.weight"] = Source(f"{theirs}.attn.out_proj.weight")
        table[f"{ours}.norm_mlp.weight"] = Source(f"{theirs}.norm_2.weight")
        table[f"{ours}.mlp.up.weight"] = Source(f"{theirs}.ffn.up_proj.weight")
        table[f"{ours}.mlp.down.weight"] = Source(f"{theirs}.ffn.down_proj.weight")
    table["norm.weight"] = Source("transformer.norm_f.weight")
    return table


def hf_tensors(table: dict[str, Source]) -> dict[str, list[str]]:
    """Hugging Face tensor -> our parameters stacked in it, in row order (for export)."""
    grouped: dict[str, list[tuple[int, str]]] = {}
    for ours, source in table.items():
        grouped.setdefault(source.hf_name, []).append((source.row_offset, ours))
    return {name: [ours for _, ours in sorted(parts)] for name, parts in grouped.items()}
