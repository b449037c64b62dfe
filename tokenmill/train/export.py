"""``tokenmill export``: a Hugging Face folder from a training checkpoint.

The folder opens with ``transformers.AutoModelForCausalLM.from_pretrained``
and in vLLM, with no custom code: ``config.json``, ``generation_config.json``,
safetensors files of at most ``--max-shard-size`` (with
``model.safetensors.index.json`` when there are several) and the tokenizer
files. A run started from an open model exports as that model's family, with
its config and tokenizer files; a model trained from scratch exports as
Llama (rope + rmsnorm + swiglu) or MPT (alibi + layernorm + gelu).

Runs in one process on CPU: the sharded checkpoint of any number of ranks is
read one output file at a time, so memory holds one file's tensors.

The folder is written beside ``--out`` and swapped in when complete, with a
marker (``tokenmill_export.json``: the run, the checkpoint, the files) by
which a later export recognises it. ``--out`` may be new, empty, or (with
``--overwrite``) an earlier export of the same run; the run folder, the base
model folder, the working directory and other folders of files are refused
(see tokenmill.safe_output).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from tokenmill import safe_output
from tokenmill.errors import UserError
from tokenmill.run_dir import RunDir
from tokenmill.train.config import ExportConfig, parse_size

MARKER = "tokenmill_export.json"
MARKER_FORMAT = "tokenmill-export-v1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run dir, or run_dir/checkpoints/step_N")
    parser.add_argument("--out", required=True,
                        help="output dir: new, empty, or an earlier export of this run (with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export of this run in --out")
    parser.add_argument("--format", choices=["hf", "peft"], default="hf",
                        help="hf: a Hugging Face model folder; peft: a LoRA run's adapter (PEFT format)")
    parser.add_argument("--merge", action="store_true", help="LoRA runs, --format hf: merge the adapters into the weights")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                        help="weights' dtype; auto: the base model's, float32 for models trained from scratch")
    parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors file, e.g. 5GB or 500MB")


def run_dir_of(checkpoint_dir: Path) -> Path:
    return checkpoint_dir.parent.parent  # <run_dir>/checkpoints/step_N


def load_from_checkpoint(path: Path):
    """(model on CPU in eval mode, trainer state) from a checkpoint or run dir.

    A LoRA checkpoint holds only the adapters: the base comes from its folder.
    """
    from tokenmill.train.checkpoint import load_model_weights, read_trainer_state, resolve_checkpoint
    from tokenmill.train.config import ModelConfig
    from tokenmill.train.model import GPT, is_adapter
    from tokenmill.typed_config import from_dict

    ckpt = resolve_checkpoint(path)
    state = read_trainer_state(ckpt)
    model = GPT(from_dict(ModelConfig, state["model_config"]))
    if model.cfg.lora is not None:
        from tokenmill.train import hf_io, lora_export

        base = hf_io.open_checkpoint(lora_export.check_base(state))
        hf_io.load_into(model, base, state["base"]["family"])
        load_model_weights(ckpt, model, only=is_adapter)
    else:
        load_model_weights(ckpt, model)
    state["checkpoint"] = ckpt
    return model.eval(), state


def is_export_of(folder: Path, run_dir: Path) -> bool:
    """Whether ``folder`` holds an export of ``run_dir`` and nothing else (its marker lists every file)."""
    if is_unmarked_run_export(folder, run_dir):
        return True
    try:
        marker = json.loads((folder / MARKER).read_text())
        names = {p.name for p in folder.iterdir()}
        return (marker.get("format") == MARKER_FORMAT and marker.get("run_dir") == str(run_dir.resolve())
                and names <= set(marker.get("files", [])) | {MARKER})
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def is_unmarked_run_export(folder: Path, run_dir: Path) -> bool:
    """A run's own ``hf``/``adapter`` folder from before exports had a marker: only files an export writes.

    Only inside the run folder, which tokenmill owns: the trainer exports there
    at the end of every run, and an older run's folder must not stop it.
    """
    from tokenmill.train import hf_io, lora_export

    if folder.resolve() not in {(run_dir / name).resolve() for name in RunDir.EXPORT_FOLDERS}:
        return False
    written = {*hf_io.METADATA_FILES, hf_io.INDEX_FILE, lora_export.ADAPTER_CONFIG, lora_export.ADAPTER_WEIGHTS}
    return all(p.name in written or re.fullmatch(r"model(-\d{5}-of-\d{5})?\.safetensors", p.name)
               for p in folder.iterdir())


def check_out(out: Path, run_dir: Path, state: dict, overwrite: bool) -> Path:
    """The resolved export folder, when writing it replaces nothing but an earlier export of this run."""
    protected = {"the run folder": run_dir}
    init_from = (state.get("base") or {}).get("init_from")
    if init_from:
        protected["the run's base model folder"] = Path(init_from)
    return safe_output.check_output_folder(
        out, "--out", "export of this run", lambda folder: is_export_of(folder, run_dir), overwrite,
        "--overwrite", protected, allowed=[run_dir / name for name in RunDir.EXPORT_FOLDERS])


def write_marker(folder: Path, run_dir: Path, checkpoint: Path, fmt: str) -> None:
    files = sorted(p.name for p in folder.iterdir())
    marker = {"format": MARKER_FORMAT, "run_dir": str(run_dir.resolve()), "checkpoint": str(checkpoint.resolve()),
              "export": fmt, "files": files + [MARKER]}
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def export(checkpoint: Path, out: Path, options: ExportConfig = ExportConfig(), fmt: str = "hf",
           merge: bool = False, overwrite: bool = False) -> Path:
    """Export a checkpoint (or a run's latest) to ``out``; returns ``out`` resolved.

    ``out`` is checked first (``check_out``); ``overwrite`` lets it replace an
    earlier export of this run: the trainer's own export does, the
    command asks for ``--overwrite``.
    """
    from tokenmill.train.checkpoint import read_trainer_state, resolve_checkpoint
    from tokenmill.train.config import ModelConfig
    from tokenmill.typed_config import from_dict

    ckpt = resolve_checkpoint(checkpoint)
    state = read_trainer_state(ckpt)
    model_cfg = from_dict(ModelConfig, state["model_config"])
    run_dir = run_dir_of(ckpt)
    lora = model_cfg.lora is not None
    if fmt == "peft" and not lora:
        raise UserError("--format peft exports LoRA adapters; this run trained every weight: use --format hf")
    if lora and fmt == "hf" and not merge:
        raise UserError("this run trained LoRA adapters: export them with --format peft, "
                        "or merged into the base weights with --format hf --merge")
    if merge and not lora:
        raise UserError("--merge applies to LoRA runs; this run trained every weight")
    target = check_out(out, run_dir, state, overwrite)
    with safe_output.staged_folder(target) as staging:
        _write(staging, ckpt, state, model_cfg, fmt, options)
        write_marker(staging, run_dir, ckpt, fmt)
        check_out(out, run_dir, state, overwrite)  # again: files may have appeared in it meanwhile
    return target


def _write(out: Path, ckpt: Path, state: dict, model_cfg, fmt: str, options: ExportConfig) -> None:
    from tokenmill.train import hf_adapter, hf_io

    run_dir = run_dir_of(ckpt)
    base = state.get("base")
    lora = model_cfg.lora is not None
    if base:
        family, base_dtype = base["family"], base["dtype"]
        base_dir = RunDir(run_dir).base
        base_config = hf_io.read_config(base_dir)
        files = {name: (base_dir / name).read_bytes() for name in hf_io.METADATA_FILES if (base_dir / name).is_file()}
    else:
        family, base_dtype, base_config = hf_adapter.family_for_export(model_cfg), "float32", None
        files = scratch_files(run_dir, state, model_cfg.seq_len)
    if lora:
        from tokenmill.train import lora_export

        base_root = lora_export.check_base(state)
        if fmt == "peft":
            dtype = hf_io.export_dtype(options.dtype, base_dtype)
            lora_export.write_peft(out, model_cfg, family, lora_export.read_adapters(ckpt, model_cfg),
                                   base_root, dtype)
            return
        fetch = lora_export.merged_fetcher(ckpt, model_cfg, family, base_root)
    else:
        fetch = hf_io.checkpoint_fetcher(ckpt, model_cfg)
    write_hf(out, model_cfg, family, base_config, files, fetch, options, base_dtype,
             state.get("eos_id"), state.get("bos_id"))


def write_hf(out: Path, model_cfg, family: str, base_config, files: dict[str, bytes], fetch,
             options: ExportConfig, base_dtype: str, eos_id=None, bos_id=None) -> Path:
    """The Hugging Face folder for weights that ``fetch`` returns (see hf_io.write_folder)."""
    from tokenmill.train import hf_adapter, hf_io

    dtype = hf_io.export_dtype(options.dtype, base_dtype)
    dtype_name = str(dtype).replace("torch.", "")
    config = hf_adapter.hf_config(model_cfg, family, base_config, dtype_name, eos_id, bos_id)
    max_bytes = parse_size(options.max_shard_size, "max_shard_size")
    return hf_io.write_folder(out, model_cfg, family, config, fetch, dtype, max_bytes, files)


def scratch_files(run_dir: Path, state: dict, seq_len: int) -> dict[str, bytes]:
    """Tokenizer and generation config for a model trained from scratch on our own tokenizer."""
    from tokenizers import Tokenizer

    path = RunDir(run_dir).tokenizer
    if not path.is_file():
        raise UserError(f"no tokenizer.json in {run_dir}: it is copied there when training starts")
    tok = Tokenizer.from_file(str(path))
    eos_id, bos_id = state.get("eos_id"), state.get("bos_id")
    token = lambda i: tok.id_to_token(i) if i is not None else None  # noqa: E731
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": token(eos_id),
        "bos_token": token(bos_id),
        "model_max_length": seq_len,
        "clean_up_tokenization_spaces": False,
    }
    generation = {"bos_token_id": bos_id, "eos_token_id": eos_id}
    as_bytes = lambda d: (json.dumps(d, indent=2) + "\n").encode()  # noqa: E731
    return {
        "tokenizer.json": path.read_bytes(),
        "tokenizer_config.json": as_bytes(tokenizer_config),
        "generation_config.json": as_bytes(generation),
    }


def main(args: argparse.Namespace) -> int:
    options = ExportConfig(dtype=args.dtype, max_shard_size=args.max_shard_size)
    out = export(Path(args.checkpoint), Path(args.out), options, args.format, args.merge, args.overwrite)
    if args.format == "peft":
        print(f"exported {out} (PEFT adapter: peft.PeftModel.from_pretrained(base_model, {str(out)!r}))")
    else:
        print(f"exported {out} (Hugging Face format: transformers.AutoModelForCausalLM.from_pretrained({str(out)!r}))")
    return 0
