"""Hugging Face checkpoint folders: read one into a (sharded) model, write one.

Reading: each rank opens the safetensors files (memory-mapped) and reads only
the rows of each tensor that its FSDP2 shard holds, so no rank ever holds the
full model. Writing: one safetensors file at a time, each at most
``max_shard_size``, from tensors fetched group by group (from a sharded
checkpoint, or from a model in memory), plus ``model.safetensors.index.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch

from tokenmill.errors import UserError
from tokenmill.train.hf_adapter import Source, hf_tensors, weight_map

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Files that travel with the weights: what transformers and vLLM read next to them.
METADATA_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "tokenizer.model",
)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


@dataclass(frozen=True)
class HFCheckpoint:
    root: Path
    config: dict
    files: dict[str, Path]  # tensor name -> the safetensors file holding it

    @property
    def tokenizer_path(self) -> Path:
        return self.root / "tokenizer.json"


def read_config(root: Path) -> dict:
    path = root / "config.json"
    if not root.is_dir():
        raise UserError(f"init_from: {root} is not a directory; give a Hugging Face checkpoint folder")
    if not path.is_file():
        raise UserError(f"{root}: no config.json; a Hugging Face checkpoint folder holds config.json and *.safetensors")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} must hold a JSON object")
    return config


def open_checkpoint(root: str | Path) -> HFCheckpoint:
    """Config and the file of every tensor; a missing shard is an error here."""
    root = Path(root)
    config = read_config(root)
    index = root / INDEX_FILE
    if index.is_file():
        try:
            weight_files = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{index}: not a safetensors index ({exc})") from None
        files = {name: root / file for name, file in weight_files.items()}
        missing = sorted({str(p.name) for p in files.values() if not p.is_file()})
        if missing:
            raise UserError(f"{root}: shard {missing[0]} listed in {INDEX_FILE} is missing"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return HFCheckpoint(root, config, files)
    single = root / SINGLE_FILE
    if not single.is_file():
        if list(root.glob("*.bin")):
            raise UserError(f"{root}: only PyTorch .bin weights; convert them to safetensors first")
        raise UserError(f"{root}: no {SINGLE_FILE} and no {INDEX_FILE}")
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as f:
        return HFCheckpoint(root, config, {name: single for name in f.keys()})


def tensor_info(ckpt: HFCheckpoint) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name -> (shape, dtype), read from the safetensors headers only."""
    from safetensors import safe_open

    info = {}
    for file in sorted(set(ckpt.files.values())):
        try:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():
                    s = f.get_slice(name)
                    info[name] = (tuple(s.get_shape()), _SAFETENSORS_DTYPES.get(s.get_dtype(), s.get_dtype()))
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise UserError(f"{file}: cannot read safetensors header ({exc})") from None
    return info


def expected_shapes(model_cfg) -> dict[str, tuple[int, ...]]:
    """Our parameter shapes, without allocating (meta device)."""
    from tokenmill.train.model import GPT

    with torch.device("meta"):
        model = GPT(model_cfg)
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def check_weights(ckpt: HFCheckpoint, model_cfg, family: str) -> str:
    """Every tensor the model needs is there with a shape that fits; returns the weights' dtype."""
    info = tensor_info(ckpt)
    shapes = expected_shapes(model_cfg)
    table = weight_map(model_cfg, family)
    for hf_name, parts in hf_tensors(table).items():
        if hf_name not in info:
            raise UserError(f"{ckpt.root}: tensor {hf_name} is missing from the checkpoint")
        want = (sum(shapes[p][0] for p in parts),) + shapes[parts[0]][1:]
        have = info[hf_name][0]
        if have != want:
            raise UserError(f"{ckpt.root}: {hf_name} has shape {list(have)}, config.json implies {list(want)}")
    dtypes = {info[s.hf_name][1] for s in table.values()}
    return dtypes.pop() if len(dtypes) == 1 else "float32"


def clean_name(name: str) -> str:
    """Parameter name without the wrappers' prefixes (activation checkpointing, compile)."""
    return name.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", "")


def load_into(model: torch.nn.Module, ckpt: HFCheckpoint, family: str) -> None:
    """Copy the checkpoint into ``model``'s parameters, each rank reading only its rows.

    Files are read one at a time and closed after, so their mapped pages do
    not accumulate in the process's memory.
    """
    from safetensors import safe_open

    from tokenmill.train.model import is_adapter

    table = weight_map(model.cfg, family)
    by_file: dict[Path, list[tuple[torch.nn.Parameter, Source]]] = {}
    for name, param in model.named_parameters():
        if is_adapter(name):  # LoRA's adapters are not part of the base model
            continue
        source = table[clean_name(name)]
        by_file.setdefault(ckpt.files[source.hf_name], []).append((param, source))
    with torch.no_grad():
        for file, params in by_file.items():
            with safe_open(str(file), framework="pt") as f:
                for param, source in params:
                    _copy_rows(param, f.get_slice(source.hf_name), source)
    model.reset_buffers()


def _copy_rows(param, tensor_slice, source: Source) -> None:
    from torch.distributed.tensor import DTensor

    if isinstance(param, DTensor):
        start, rows = _local_rows(param)
        local = _read_rows(tensor_slice, source, start, rows).to(param.device, param.dtype)
        param.copy_(DTensor.from_local(local, param.device_mesh, param.placements,
                                       run_check=False, shape=param.shape, stride=param.stride()))
    else:
        param.copy_(_read_rows(tensor_slice, source, 0, param.shape[0]).to(param.device, param.dtype))


def _local_rows(param) -> tuple[int, int]:
    """(first row, row count) of this rank's shard of a dim-0 sharded parameter."""
    from torch.distributed.tensor import Shard

    if len(param.placements) != 1 or param.placements[0] != Shard(0):
        raise RuntimeError(f"expected parameters sharded on dim 0 over one mesh dim, got {param.placements}")
    n, world = param.shape[0], param.device_mesh.size()
    chunk = -(-n // world)  # torch.chunk's sizes: ceil(n / world), the last ones shorter or empty
    start = min(n, param.device_mesh.get_local_rank() * chunk)
    return start, param.to_local().shape[0]


def _read_rows(tensor_slice, source: Source, start: int, rows: int) -> torch.Tensor:
    begin = source.row_offset + start
    return tensor_slice[begin: begin + rows]


# --- writing -------------------------------------------------------------------------


def write_folder(
    out: Path,
    model_cfg,
    family: str,
    config: dict,
    fetch: Callable[[list[str]], dict[str, torch.Tensor]],
    dtype: torch.dtype,
    max_shard_bytes: int,
    files: dict[str, bytes],
) -> Path:
    """A Hugging Face folder: config, weights in shards of <= max_shard_bytes, metadata files.

    ``fetch(names)`` returns our full tensors for those parameter names;
    it is called once per output file, so memory holds one file's tensors.
    ``files`` are the other files (tokenizer, generation config) by name.
    ``out`` must be new or empty: nothing in it is replaced. ``tokenmill export``
    passes a staging folder that it swaps in when complete (tokenmill.safe_output).
    """
    from tokenmill.safe_output import new_or_empty

    new_or_empty(out)
    groups = hf_tensors(weight_map(model_cfg, family))
    shapes = expected_shapes(model_cfg)
    plan = _plan_files(groups, shapes, dtype, max_shard_bytes)
    index: dict[str, str] = {}
    total = 0
    for n, hf_names in enumerate(plan):
        file = SINGLE_FILE if len(plan) == 1 else f"model-{n + 1:05d}-of-{len(plan):05d}.safetensors"
        ours = [p for name in hf_names for p in groups[name]]
        full = fetch(ours)
        tensors = {name: torch.cat([full[p] for p in groups[name]]).to(dtype).contiguous() for name in hf_names}
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        _save(tensors, out / file)
        index.update({name: file for name in hf_names})
        del full, tensors
    if len(plan) > 1:
        (out / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": index}, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for name, content in files.items():
        if name != "config.json":
            (out / name).write_bytes(content)
    return out


def _plan_files(groups: dict[str, list[str]], shapes, dtype: torch.dtype, max_bytes: int) -> list[list[str]]:
    """Hugging Face tensor names split into files of at most max_bytes (a bigger tensor gets its own)."""
    size = torch.empty((), dtype=dtype).element_size()
    files: list[list[str]] = [[]]
    used = 0
    for name, parts in groups.items():
        nbytes = sum(_numel(shapes[p]) for p in parts) * size
        if files[-1] and used + nbytes > max_bytes:
            files.append([])
            used = 0
        files[-1].append(name)
        used += nbytes
    return files


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})


def model_fetcher(model: torch.nn.Module) -> Callable[[list[str]], dict[str, torch.Tensor]]:
    """``fetch`` for a model in memory (one process, unsharded)."""
    state = {clean_name(k): v for k, v in model.state_dict().items()}
    return lambda names: {n: state[n].detach().cpu() for n in names}


def checkpoint_fetcher(checkpoint_dir: Path, model_cfg) -> Callable[[list[str]], dict[str, torch.Tensor]]:
    """``fetch`` from a sharded (DCP) checkpoint: reads only the named tensors, in this process."""
    import warnings

    import torch.distributed.checkpoint as dcp

    shapes = expected_shapes(model_cfg)

    def fetch(names: list[str]) -> dict[str, torch.Tensor]:
        state = {"model": {n: torch.empty(shapes[n], dtype=torch.float32) for n in names}}
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(state, checkpoint_id=str(checkpoint_dir), no_dist=True)
        return state["model"]

    return fetch


def export_dtype(name: str, base_dtype: Optional[str]) -> torch.dtype:
    if name == "auto":
        return DTYPES.get(base_dtype or "float32", torch.float32)
    return DTYPES[name]
