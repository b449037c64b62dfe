"""The training loop. Runs in every rank (torchrun, TorchDistributor or 1 process).

One optimizer step = ``grad_accum`` micro-batches per rank, so the global
batch (sequences per step) is the same on any number of ranks. All state
needed to continue exactly (weights, optimizer, scheduler, dataloader
position, RNG, step, tokens) is checkpointed at step boundaries.

Pretraining shards train on the mean next-token loss of every position;
SFT shards on target tokens only, normalised over the global batch
(``tokenmill/train/sft.py``), always with the document mask of their doc_ids.
"""

from __future__ import annotations

import math
import os
import random
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from tokenmill.config import to_dict
from tokenmill.errors import UserError
from tokenmill.train import base_model, checkpoint, data, sft
from tokenmill.train.config import OptimConfig, TrainConfig
from tokenmill.train.fsdp import Dist, build_model, init_distributed
from tokenmill.train.model import document_layout, documents_from_ids, flops_per_token, lm_loss
from tokenmill.train.runlog import RunLog, flat_params, peak_flops, read_jsonl
from tokenmill.train.shared_memory import StreamingMemory, sweep_stale_segments

# Fault drills and tests: sleep this many seconds after each step, so that a
# SIGKILL sent from outside lands in the middle of a run.
STEP_DELAY_ENV = "TOKENMILL_STEP_DELAY"


class NonFiniteError(UserError):
    """Loss or gradient norm became NaN/inf and the config says stop."""


def lr_factor(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to min_ratio at max_steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on norm weights and biases (1-D)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused or None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def all_mean(value: torch.Tensor) -> float:
    """Mean of a scalar over ranks (gloo has no AVG reduction: sum, divide)."""
    value = value.detach().float().clone()
    dist.all_reduce(value)
    return value.item() / dist.get_world_size()


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.d: Dist = init_distributed(cfg.device)
        data.set_local_topology()
        self.run_dir = cfg.run_path
        self.cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else self.run_dir / "cache"
        self.swept_shm = self._sweep_stale_shared_memory() if cfg.data.clean_stale_shm else []
        self.info = data.read_dataset_info(cfg.data.shards, self.cache_dir)
        # Starting from an open model: its config.json gives the architecture.
        self.base, self.model_cfg = base_model.resolve(cfg, self.info)
        self.lora = self.model_cfg.lora is not None
        data.check_split_sizes(self.info, cfg.global_batch_size)
        self.accum = cfg.grad_accum(self.d.world_size)
        seed_everything(cfg.seed + self.d.rank)
        cuda = self.d.device.type == "cuda"
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        self.model = build_model(self.model_cfg, self.d.device, self.bf16, cfg.activation_checkpointing, cfg.compile)
        self.optimizer = build_optimizer(self.model, cfg.optim, fused=cuda)
        self.trainable_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.base_sha256 = None
        if self.lora:  # LoRA checkpoints name their base by content: rank 0 hashes it once
            self.base_sha256 = _broadcast(base_model.weights_sha256(self.base.ckpt) if self.d.is_main else None)
        factor = partial(
            lr_factor, warmup=cfg.optim.warmup_steps, max_steps=cfg.max_steps, min_ratio=cfg.optim.min_lr_ratio
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.shared_memory = StreamingMemory()  # released by close(), not at process exit
        try:
            self.loader = data.build_loader(self.info, cfg.data, self.cache_dir, "train", cfg.micro_batch_size, True)
            self.val_loader = data.build_loader(
                self.info, cfg.data, self.cache_dir, "val", cfg.micro_batch_size, shuffle=False, drop_last=False
            )
            self._set_up_run(cuda)
        except BaseException:
            self.shared_memory.close()
            raise

    def _set_up_run(self, cuda: bool) -> None:
        """Counters, the run folder's metadata and the run log."""
        cfg = self.cfg
        self.ckpt_root = self.run_dir / "checkpoints"
        self.step = 0
        self.tokens = 0
        self.skips_in_row = 0
        self.tokens_per_step = cfg.global_batch_size * self.model_cfg.seq_len
        self.flops_per_token = flops_per_token(self.model_cfg)
        peak = cfg.peak_flops or (peak_flops(torch.cuda.get_device_name()) if cuda else None)
        self.peak_flops = peak
        if self.d.is_main:
            data.copy_run_metadata(self.info, self.run_dir)
            if self.base:
                base_model.copy_metadata(self.base, self.run_dir)
        self.log = RunLog(self.run_dir, self.d.is_main, cfg.mlflow, _flat_params(cfg, self.model_cfg))
        if self.swept_shm:
            self.log.event("stale_shared_memory_freed", segments=self.swept_shm)

    def _sweep_stale_shared_memory(self) -> list[str]:
        """Local rank 0 unlinks the segments killed runs left on this machine (live runs'
        stay); every rank waits, so none opens a dataset while the sweep runs."""
        swept = sweep_stale_segments() if self.d.local_rank == 0 else []
        if dist.is_initialized():
            dist.barrier()
        return swept

    def close(self) -> None:
        """Release the loaders' shared memory (a process may train again after this)."""
        self.shared_memory.close()

    # ----- start or resume -------------------------------------------------
    def maybe_resume(self) -> None:
        """Weights from the run's latest checkpoint; else the base model; else random.

        A checkpoint wins over init_from: a restart after a crash continues
        the run instead of starting again from the base model. A LoRA
        checkpoint holds only the adapters: the base is read again, and must
        be the one the run started from (same sha256). A checkpoint damaged
        after it was complete is skipped for the one before it.
        """
        autoresume = self.cfg.checkpoint.autoresume
        latest, skipped = checkpoint.resumable_checkpoint(self.ckpt_root) if autoresume else (None, [])
        for path, problem in skipped:  # damaged after it was complete: resume from the one before
            self.log.event("checkpoint_skipped", checkpoint=str(path), reason=problem)
        if latest is not None:
            self._check_same_run(latest, checkpoint.read_trainer_state(latest))
        if self.base and (latest is None or self.lora):
            self._load_base("init_from" if latest is None else "base_reloaded")
        if latest is None:
            if not self.base:
                self.model.init_weights(self.cfg.seed)
            elif self.lora:
                self.model.init_adapters(self.cfg.seed)
            self.log.event(
                "start", world_size=self.d.world_size, grad_accum=self.accum, model=to_dict(self.model_cfg),
                device=str(self.d.device), method=self.cfg.method, trainable_params=self.trainable_params,
            )
            return
        state = checkpoint.load(latest, self.model, self.optimizer, trainable_only=self.lora)
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        self.step, self.tokens = state["step"], state["tokens"]
        self._truncate_sample_log()
        self.log.event(
            "resume", step=self.step, checkpoint=str(latest), saved_world_size=state["world_size"],
            world_size=self.d.world_size,
        )

    def _check_same_run(self, latest: Path, saved: dict) -> None:
        if saved["model_config"] != to_dict(self.model_cfg):
            raise UserError(
                f"checkpoint {latest} was trained with a different model config; "
                f"use a new run_dir or restore the model section"
            )
        want = (saved.get("base") or {}).get("sha256")
        if self.lora and want and want != self.base_sha256:
            raise UserError(
                f"the base model at {self.base.root} (sha256 {self.base_sha256[:12]}) is not the one the "
                f"adapters in {latest} were trained on ({want[:12]}): pass that base model, or use a new run_dir"
            )

    def _load_base(self, event: str) -> None:
        from tokenmill.train.hf_io import load_into

        started = time.monotonic()
        load_into(self.model, self.base.ckpt, self.base.family)
        self.log.event(event, path=str(self.base.root), family=self.base.family,
                       seconds=round(time.monotonic() - started, 3))

    # ----- one step -----------------------------------------------------
    def forward(self, tokens: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V). SFT rows (doc_ids given) attend within their examples; pretraining
        rows with attention.doc_mask within documents ending at the shards' EOS."""
        if doc_ids is not None:
            docs = documents_from_ids(doc_ids)
        else:
            docs = document_layout(tokens, self.info.eos_id) if self.model_cfg.attention.doc_mask else None
        return self.model(tokens, docs)

    def train_step(self, micro_batches: list[data.Batch]) -> tuple[float, float]:
        """Forward/backward over the micro-batches; returns (loss, grad norm).

        Gradients are reduced across ranks only on the last micro-batch.
        """
        if self.info.kind == "sft":
            loss = sft.masked_backward(self.model, self.forward, micro_batches, self.d.device)
        else:
            loss = self._lm_backward(micro_batches)
        max_norm = self.cfg.optim.grad_clip or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if hasattr(grad_norm, "full_tensor"):  # DTensor under FSDP2: the global norm
            grad_norm = grad_norm.full_tensor()
        return loss, float(grad_norm)

    def _lm_backward(self, micro_batches: list[data.Batch]) -> float:
        """Pretraining: the mean of the micro-batches' mean losses, averaged over ranks."""
        total = torch.zeros((), device=self.d.device)
        for i, batch in enumerate(micro_batches):
            self.model.set_requires_gradient_sync(i == len(micro_batches) - 1)
            tokens = batch.tokens.to(self.d.device, non_blocking=True)  # (B, T)
            loss = lm_loss(self.forward(tokens), tokens) / len(micro_batches)
            loss.backward()
            total += loss.detach()
        return all_mean(total)

    def handle_nonfinite(self, loss: float, grad_norm: float) -> None:
        """Drop this step's gradients; stop or skip as configured."""
        self.optimizer.zero_grad(set_to_none=True)
        self.skips_in_row += 1
        action = self.cfg.on_nonfinite
        if action == "skip" and self.skips_in_row >= self.cfg.max_consecutive_skips:
            action = "stop"
        self.log.event("nonfinite", step=self.step + 1, loss=loss, grad_norm=grad_norm, action=action)
        if action == "stop":
            self.log.event("failure", step=self.step, reason="non-finite loss or gradient norm")
            raise NonFiniteError(
                f"non-finite loss ({loss}) or gradient norm ({grad_norm}) at step {self.step + 1}; "
                f"no update was applied. Lower optim.lr, check the data, or set on_nonfinite: skip. "
                f"The last good checkpoint is in {self.ckpt_root}"
            )

    # ----- eval and checkpoints ------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Val loss (per sequence for pretraining, per target token for SFT); then the eval prompts."""
        self.model.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.d.device)  # (loss sum, weight)
        with torch.no_grad():
            for i, batch in enumerate(self.val_loader):
                if i >= self.cfg.eval_batches:
                    break
                sums += self._eval_sums(batch)
            dist.all_reduce(sums)
            if self.cfg.eval_prompts:
                self._answer_prompts()
        self.model.train()
        val_loss = (sums[0] / sums[1].clamp(min=1)).item()
        result = {"val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50.0))}
        self.log.event("eval", step=self.step, **result)
        self.log.metrics(self.step, result)
        return result

    def _eval_sums(self, batch: data.Batch) -> torch.Tensor:
        if self.info.kind == "sft":
            return sft.eval_sums(self.forward, batch, self.d.device)
        tokens = batch.tokens.to(self.d.device)
        loss = lm_loss(self.forward(tokens), tokens)
        return torch.tensor([loss.item() * len(tokens), len(tokens)], dtype=torch.float64, device=self.d.device)

    def _answer_prompts(self) -> None:
        """Every rank generates (FSDP needs all in each forward); rank 0 logs."""
        answers = sft.answer_prompts(self.model, self.info, self.cfg.eval_prompts, self.cfg.eval_max_new_tokens,
                                     self.d.device)
        self.log.event("eval_prompts", step=self.step,
                       answers=[{"prompt": a.prompt, "answer": a.answer} for a in answers])
        self.log.text(sft.answers_text(self.step, answers), f"eval_prompts/step_{self.step:07d}.jsonl")

    def report(self, loss: float, grad_norm: float, lr: float, seconds_per_step: float) -> None:
        """Console line and metrics; MFU only where the device's peak FLOP/s is known."""
        tok_s = self.tokens_per_step / seconds_per_step
        mfu = None
        if self.peak_flops:
            mfu = self.flops_per_token * tok_s / (self.peak_flops * self.d.world_size)
        self.log.progress(self.step, self.cfg.max_steps, loss, lr, tok_s, mfu, seconds_per_step)
        metrics = {"loss": loss, "grad_norm": grad_norm, "lr": lr, "tokens_per_s": tok_s, "tokens": self.tokens}
        if mfu is not None:
            metrics["mfu"] = mfu
        self.log.metrics(self.step, metrics)

    def last_step(self) -> int:
        """Where this run ends: max_steps, or earlier with stop_at_step."""
        return min(self.cfg.max_steps, self.cfg.stop_at_step or self.cfg.max_steps)

    def should_save(self, last_save: float) -> bool:
        every = self.cfg.checkpoint
        due = self.step == self.last_step() or (every.every_steps and self.step % every.every_steps == 0)
        if not due and every.every_minutes:
            # Clocks differ between ranks: rank 0 decides for everyone.
            flag = torch.tensor([time.monotonic() - last_save >= 60 * every.every_minutes], dtype=torch.int32)
            dist.broadcast(flag, src=0)
            due = bool(flag.item())
        return bool(due)

    def save(self) -> None:
        started = time.monotonic()
        state = {
            "step": self.step,
            "tokens": self.tokens,
            "scheduler": self.scheduler.state_dict(),
            "loader": self.loader.state_dict(),
            "model_config": to_dict(self.model_cfg),
            "config": to_dict(self.cfg),
            "world_size": self.d.world_size,
            "eos_id": self.info.eos_id,
            "bos_id": self.info.bos_id,
            # Export writes the base model's config and tokenizer back (from <run_dir>/base).
            "method": self.cfg.method,
            "base": {"init_from": str(self.base.root), "family": self.base.family, "dtype": self.base.dtype,
                     "sha256": self.base_sha256} if self.base else None,
        }
        path = checkpoint.save(self.ckpt_root, self.step, self.model, self.optimizer, state,
                               self.cfg.checkpoint.keep_last, trainable_only=self.lora)
        self.log.event("checkpoint", step=self.step, path=str(path), seconds=round(time.monotonic() - started, 3))

    def export_hf(self) -> None:
        """The Hugging Face folder of the final checkpoint, written by rank 0."""
        from tokenmill.train.export import export

        out = Path(self.cfg.export.out) if self.cfg.export.out else self.run_dir / "hf"
        final = checkpoint.step_dir(self.ckpt_root, self.step)
        if self.d.is_main:
            started = time.monotonic()
            # A LoRA run hands back both: the merged model and the adapter on its own.
            export(final, out, self.cfg.export, merge=self.lora, overwrite=True)
            if self.lora:
                export(final, self.run_dir / "adapter", self.cfg.export, fmt="peft", overwrite=True)
            self.log.event("export_hf", path=str(out), seconds=round(time.monotonic() - started, 3))
        dist.barrier()

    # ----- sample audit ----------------------------------------------------
    def _sample_log(self) -> Path:
        return self.run_dir / "samples" / f"rank{self.d.rank}.jsonl"

    def _record_samples(self, micro_batches: list[dict]) -> None:
        if not self.cfg.record_sample_ids:
            return
        ids = [int(i) for b in micro_batches for i in b.seq_id]
        path = self._sample_log()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(f'{{"step": {self.step}, "ids": {ids}}}\n')

    def _truncate_sample_log(self) -> None:
        """After a resume, forget steps that the restored checkpoint did not include."""
        path = self._sample_log()
        if not self.cfg.record_sample_ids or not path.exists():
            return
        import json

        kept = [r for r in read_jsonl(path) if r["step"] <= self.step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    # ----- the loop -----------------------------------------------------
    def micro_batches(self):
        """Endless micro-batches; a new epoch starts when the loader runs out."""
        empty_epochs = 0  # one is normal: resuming exactly at the end of an epoch
        while True:
            empty_epochs += 1
            for batch in self.loader:
                empty_epochs = 0
                yield batch
            if empty_epochs > 1:
                raise UserError(f"the train split of {self.info.root} gives no batch of {self.cfg.micro_batch_size}")

    def run(self) -> dict:
        cfg = self.cfg
        self.maybe_resume()
        stream = self.micro_batches()
        delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
        last_save = window_start = time.monotonic()
        window_steps, loss = 0, float("nan")
        while self.step < self.last_step():
            batches = [next(stream) for _ in range(self.accum)]
            loss, grad_norm = self.train_step(batches)
            if math.isfinite(loss) and math.isfinite(grad_norm):
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.skips_in_row = 0
            else:
                self.handle_nonfinite(loss, grad_norm)
            lr = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            self.step += 1
            self.tokens += self.tokens_per_step
            self._record_samples(batches)
            window_steps += 1
            if self.step % cfg.log_every == 0 or self.step == self.last_step():
                seconds_per_step = (time.monotonic() - window_start) / window_steps
                self.report(loss, grad_norm, lr, seconds_per_step)
                window_start, window_steps = time.monotonic(), 0
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < self.last_step():
                self.evaluate()  # the last step is evaluated below
            if self.should_save(last_save):
                self.save()
                last_save = time.monotonic()
            if delay:
                time.sleep(delay)
        result = {"step": self.step, "tokens": self.tokens, "loss": loss}
        result.update(self.evaluate())
        result["peak_memory_gb"] = round(peak_memory_bytes(self.d.device) / 1e9, 3)  # this rank (rank 0)
        if cfg.export_hf and self.step >= cfg.max_steps:
            self.export_hf()
        # "stopped": ended early by stop_at_step; running again resumes.
        self.log.event("end" if self.step >= cfg.max_steps else "stopped", **result)
        self.log.finish()
        return result


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this rank: CUDA's allocator peak, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _broadcast(value):
    """Rank 0's value on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _flat_params(cfg: TrainConfig, model_cfg) -> dict[str, str]:
    """Config as flat key -> string, for MLflow params."""
    return flat_params(to_dict(cfg), to_dict(model_cfg))


def train(cfg: TrainConfig) -> dict:
    """Train in this process (one rank); tears the process group down at the end."""
    trainer = None
    try:
        trainer = Trainer(cfg)
        return trainer.run()
    except Exception as exc:
        if trainer is not None and not isinstance(exc, NonFiniteError):  # that one is logged already
            trainer.log.event("failure", step=trainer.step, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if trainer is not None:
            trainer.close()
        if dist.is_initialized():
            dist.destroy_process_group()


def train_from_dict(config: dict) -> dict:
    """Entry point for TorchDistributor: plain data in, rank 0's summary out."""
    from tokenmill.config import from_dict

    return train(from_dict(TrainConfig, config))
