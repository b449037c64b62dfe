"""LoRA runs out: a PEFT adapter folder, or the adapters merged into the base weights.

A LoRA checkpoint holds only the adapters (A, B per targeted projection); the
base comes from the Hugging Face folder the run started from, which must
still be the same (its sha256 is in the checkpoint).

PEFT names a module by its Hugging Face path (``model.layers.0.self_attn.q_proj``).
Where Hugging Face fuses several of our projections into one tensor (MPT's
``Wqkv`` holds q, k and v), the adapters are stacked into one of higher rank:
A = [A_q; A_k; A_v] and B block-diagonal, with alpha scaled alike, which
computes exactly the same update.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from tokenmill.errors import UserError
from tokenmill.train.hf_adapter import hf_tensors, weight_map

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def module_of(param_name: str) -> str:
    """blocks.0.attn.q.weight -> blocks.0.attn.q"""
    return param_name.rsplit(".", 1)[0]


def adapter_names(model_cfg) -> list[str]:
    from tokenmill.train.hf_io import expected_shapes
    from tokenmill.train.model import is_adapter

    return [n for n in expected_shapes(model_cfg) if is_adapter(n)]


def read_adapters(checkpoint_dir: Path, model_cfg) -> dict[str, torch.Tensor]:
    """Every adapter tensor of a LoRA checkpoint, full size, in this process."""
    from tokenmill.train.hf_io import checkpoint_fetcher

    return checkpoint_fetcher(checkpoint_dir, model_cfg)(adapter_names(model_cfg))


def check_base(state: dict) -> Path:
    """The base model folder of a LoRA run, unchanged since the run used it."""
    from tokenmill.train.base_model import weights_sha256
    from tokenmill.train.hf_io import open_checkpoint

    base = state.get("base") or {}
    root = Path(base.get("init_from", ""))
    want = base.get("sha256")
    if not root.is_dir():
        raise UserError(f"the base model of this LoRA run ({root}) is gone: the adapters need it to export")
    have = weights_sha256(open_checkpoint(root))
    if want and have != want:
        raise UserError(f"the base model at {root} changed since training (sha256 {have[:12]}, the run used "
                        f"{want[:12]}): the adapters only fit the model they were trained on")
    return root


def merged_fetcher(checkpoint_dir: Path, model_cfg, family: str, base_root: Path) -> Callable:
    """``fetch`` for hf_io.write_folder: base weights with scale x B A added where adapted."""
    from safetensors import safe_open

    from tokenmill.train.hf_io import expected_shapes, open_checkpoint

    shapes = expected_shapes(model_cfg)
    adapters = read_adapters(checkpoint_dir, model_cfg)
    base = open_checkpoint(base_root)
    table = weight_map(model_cfg, family)
    scale = model_cfg.lora.scale

    def fetch(names: list[str]) -> dict[str, torch.Tensor]:
        out = {}
        for name in names:
            source = table[name]
            with safe_open(str(base.files[source.hf_name]), framework="pt") as f:
                rows = shapes[name][0]
                weight = f.get_slice(source.hf_name)[source.row_offset: source.row_offset + rows].float()
            a, b = adapters.get(f"{module_of(name)}.lora_a"), adapters.get(f"{module_of(name)}.lora_b")
            if a is not None and name.endswith(".weight"):
                weight = weight + scale * (b.float() @ a.float())  # (out, r) @ (r, in)
            out[name] = weight
        return out

    return fetch


def write_peft(out: Path, model_cfg, family: str, adapters: dict[str, torch.Tensor], base_root: Path,
               dtype: torch.dtype) -> Path:
    """adapter_config.json + adapter_model.safetensors that peft.PeftModel.from_pretrained opens.

    ``out`` must be new or empty: nothing in it is replaced. ``tokenmill export``
    passes a staging folder that it swaps in when complete (tokenmill.safe_output).
    """
    from safetensors.torch import save_file

    from tokenmill.safe_output import new_or_empty
    from tokenmill.train.hf_io import expected_shapes

    lora = model_cfg.lora
    shapes = expected_shapes(model_cfg)
    tensors, targets, rank_pattern, alpha_pattern = {}, set(), {}, {}
    for hf_name, parts in hf_tensors(weight_map(model_cfg, family)).items():
        adapted = [p for p in parts if f"{module_of(p)}.lora_a" in adapters]
        if not adapted:
            continue
        hf_module = hf_name.rsplit(".", 1)[0]
        a, b = _stack(parts, adapted, adapters, shapes)
        tensors[f"base_model.model.{hf_module}.lora_A.weight"] = a.to(dtype).contiguous()
        tensors[f"base_model.model.{hf_module}.lora_B.weight"] = b.to(dtype).contiguous()
        leaf = hf_module.rsplit(".", 1)[-1]
        targets.add(leaf)
        if len(adapted) > 1:  # several of ours in one tensor: rank and alpha grow together
            rank_pattern[leaf] = lora.rank * len(adapted)
            alpha_pattern[leaf] = lora.alpha * len(adapted)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base_root),
        "r": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
        "target_modules": sorted(targets), "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern,
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "modules_to_save": None, "use_rslora": False, "use_dora": False,
    }
    new_or_empty(out)
    save_file(tensors, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def _stack(parts: list[str], adapted: list[str], adapters: dict, shapes: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One adapter for a fused tensor: A (sum r, in) stacked; B (sum out, sum r) block-diagonal."""
    a = torch.cat([adapters[f"{module_of(p)}.lora_a"] for p in adapted])
    rows = [shapes[p][0] for p in parts]
    b = torch.zeros(sum(rows), a.shape[0])
    col = 0
    for i, p in enumerate(parts):
        if p not in adapted:
            continue
        block = adapters[f"{module_of(p)}.lora_b"]
        start = sum(rows[:i])
        b[start: start + rows[i], col: col + block.shape[1]] = block
        col += block.shape[1]
    return a, b
