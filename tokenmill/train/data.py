"""Read MDS shards written by the shards stage: manifest checks and loaders.

A shards dir ``S`` (local path or a URI that ``streaming`` can read) holds
``dataset.json``, ``tokenizer.json``, ``train/`` and ``val/``. Each sample has
``tokens`` (seq_len token ids, uint16 or uint32) and ``seq_id`` (a unique
global id, used to audit that a resumed run neither repeats nor skips data).

Two formats (``dataset.json``'s ``format``; the file is read and checked by
``tokenmill/shards/dataset_info.py``):

- ``tokenmill-mds-v1`` (pretraining): tokens, seq_id.
- ``tokenmill-mds-sft-v1`` (fine-tuning, ``tokenmill/chat/shards.py``): also
  ``loss_mask`` (1: the token is a training target) and ``doc_ids`` (1, 2,
  ... per packed example, 0 on padding). The chat template travels as
  ``tokenizer_config.json`` next to dataset.json.
"""

from __future__ import annotations

import os
import shutil
import socket
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

from tokenmill.errors import UserError
from tokenmill.locations import is_remote
from tokenmill.locations import strip_file_scheme as local_path
from tokenmill.shards.dataset_info import FILE as DATASET_FILE, DatasetInfo
from tokenmill.train.config import DataConfig, ModelConfig, ModelSpec, model_config

if TYPE_CHECKING:
    import torch

METADATA = (DATASET_FILE, "tokenizer.json")
OPTIONAL_METADATA = ("tokenizer_config.json",)  # the chat template of SFT shards


@dataclass(frozen=True, kw_only=True)
class ShardsInfo(DatasetInfo):
    """What ``dataset.json`` says about the shards, and where they and their metadata are."""

    root: str  # the shards location as given (local dir or URI)
    meta_dir: Path  # local dir holding dataset.json and tokenizer.json

    @property
    def tokenizer_path(self) -> Path:
        return self.meta_dir / "tokenizer.json"

    @property
    def template_path(self) -> Path:
        """tokenizer_config.json holding the chat template (SFT shards)."""
        return self.meta_dir / "tokenizer_config.json"


def fetch_metadata(shards: str, cache_dir: Path) -> Path:
    """Local dir with dataset.json and tokenizer.json, downloading if remote."""
    if not is_remote(shards):
        return Path(local_path(shards))  # DatasetInfo.read says when dataset.json is not there
    from streaming.base.storage import download_file

    cache_dir.mkdir(parents=True, exist_ok=True)
    for name in METADATA + OPTIONAL_METADATA:
        target = cache_dir / name
        if not target.exists():
            try:
                download_file(f"{shards.rstrip('/')}/{name}", str(target), timeout=120)
            except Exception as exc:  # any storage backend error
                if name in METADATA:
                    raise UserError(f"cannot download {name} from {shards}: {exc}") from None
    return cache_dir


def read_dataset_info(shards: str, cache_dir: Path) -> ShardsInfo:
    """The shards' ``dataset.json`` (format, dtype, seq_len, vocab, split sizes), checked."""
    meta_dir = fetch_metadata(shards, cache_dir)
    dataset = DatasetInfo.read(meta_dir)
    fields = {f.name: getattr(dataset, f.name) for f in dataclasses.fields(DatasetInfo)}
    return ShardsInfo(**fields, root=shards, meta_dir=meta_dir)


def resolve_model(spec: ModelSpec, info: ShardsInfo) -> ModelConfig:
    """The model config with vocab and seq_len from the shards.

    A value set in the config that disagrees with the shards is an error:
    training would index out of the embedding or on windows of the wrong size.
    """
    for name in ("vocab_size", "seq_len"):
        wanted, have = getattr(spec, name), getattr(info, name)
        if wanted is not None and wanted != have:
            raise UserError(
                f"model.{name} is {wanted} but the shards at {info.root} have {name} {have} "
                f"(dataset.json); set model.{name} to {have} or leave it out to use the shards' value"
            )
    return model_config(spec, info.vocab_size, info.seq_len)


def check_split_sizes(info: ShardsInfo, global_batch_size: int) -> None:
    """One optimizer step needs global_batch_size train sequences; eval needs one val sequence."""
    train = int(info.splits["train"].get("sequences", 0))
    if train < global_batch_size:
        raise UserError(
            f"the train split of {info.root} has {train} sequences, fewer than global_batch_size "
            f"({global_batch_size}): lower global_batch_size or make more data"
        )
    if int(info.splits["val"].get("sequences", 0)) < 1:
        raise UserError(f"the val split of {info.root} is empty: rebuild the shards with a val fraction > 0")


def set_local_topology() -> None:
    """Recompute LOCAL_RANK / LOCAL_WORLD_SIZE from the hosts of all ranks.

    Spark's TorchDistributor (local_mode=False) runs each rank as its own task
    with LOCAL_RANK=0 and LOCAL_WORLD_SIZE=1; two ranks on one host would then
    collide in streaming's shared memory. Must run after the process group
    is up and before any dataset is built.
    """
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    hosts: list = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    rank = dist.get_rank()
    same_host = [r for r, h in enumerate(hosts) if h == hosts[rank]]
    os.environ["LOCAL_RANK"] = str(same_host.index(rank))
    os.environ["LOCAL_WORLD_SIZE"] = str(len(same_host))


class Batch(NamedTuple):
    """One micro-batch. A tuple, so ``streaming`` counts its rows as len(batch[0])."""

    tokens: torch.Tensor  # (B, T) int64
    seq_id: torch.Tensor  # (B,) int64
    loss_mask: Optional[torch.Tensor] = None  # (B, T) bool, SFT: token t is a target
    doc_ids: Optional[torch.Tensor] = None  # (B, T) int64, SFT: example number, 0 on padding


def collate(samples: list[dict]) -> Batch:
    """List of MDS samples -> Batch; loss_mask and doc_ids when the samples have them (SFT)."""
    import numpy as np
    import torch

    tokens = np.stack([s["tokens"] for s in samples]).astype(np.int64)
    ids = np.array([s["seq_id"] for s in samples], dtype=np.int64)
    if "loss_mask" not in samples[0]:
        return Batch(torch.from_numpy(tokens), torch.from_numpy(ids))
    mask = np.stack([s["loss_mask"] for s in samples]).astype(bool)
    docs = np.stack([s["doc_ids"] for s in samples]).astype(np.int64)
    return Batch(torch.from_numpy(tokens), torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(docs))


def build_loader(
    info: ShardsInfo,
    cfg: DataConfig,
    cache_dir: Path,
    split: str,
    batch_size: int,
    shuffle: bool,
    drop_last: bool = True,
):
    """StreamingDataLoader over one split; batch_size is per rank.

    Training drops a last partial batch (every step has the full global
    batch); eval keeps it, so a small val split still gets evaluated.
    """
    from streaming import StreamingDataLoader, StreamingDataset

    if is_remote(info.root):
        remote, local = f"{info.root.rstrip('/')}/{split}", str(cache_dir / split)
    else:
        remote, local = None, str(Path(local_path(info.root)) / split)
    from tokenmill.train.shared_memory import one_registration_at_a_time

    with one_registration_at_a_time():  # another run on this machine may be opening one now
        dataset = StreamingDataset(
            remote=remote,
            local=local,
            batch_size=batch_size,
            shuffle=shuffle,
            shuffle_seed=cfg.shuffle_seed,
            num_canonical_nodes=cfg.num_canonical_nodes,
            predownload=cfg.predownload,
        )
    return StreamingDataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        drop_last=drop_last,
    )


def copy_run_metadata(info: ShardsInfo, run_dir: Path) -> None:
    """Keep dataset.json, tokenizer.json (and the chat template) with the run, for export/generate."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in METADATA + OPTIONAL_METADATA:
        source = info.meta_dir / name
        if source.exists():
            shutil.copyfile(source, run_dir / name)
