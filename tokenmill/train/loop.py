"""The trainer: runs optimizer steps. Runs in every rank (torchrun, TorchDistributor or 1 process).

One optimizer step = ``grad_accum`` micro-batches per rank, so the global
batch (sequences per step) is the same on any number of ranks. All state
needed to continue exactly (weights, optimizer, scheduler, dataloader
position, RNG, step, tokens) is checkpointed at step boundaries.

The pieces it runs live beside it, as in torchtitan: the process group
(``distributed``), the sharded model (``parallelize``), the optimizer and
schedule (``optim``), where a run starts and what a checkpoint holds
(``checkpoint_manager``), the loss (``objective``: language modelling or the
masked SFT loss, chosen once from the shards), evaluation (``evaluate``) and
the sample audit (``sample_log``).
"""

from __future__ import annotations

import math
import os
import random
import time

import numpy as np
import torch
import torch.distributed as dist

from tokenmill.errors import UserError
from tokenmill.train import base_model, checkpoint, data, evaluate
from tokenmill.train.checkpoint_manager import CheckpointManager, base_fingerprint
from tokenmill.train.config import TrainConfig
from tokenmill.train.distributed import Dist, init_distributed
from tokenmill.train.memory import peak_memory_bytes
from tokenmill.train.model import flops_per_token
from tokenmill.train.objective import make_forward, objective_for
from tokenmill.train.optim import build_optimizer, build_scheduler
from tokenmill.train.parallelize import build_model
from tokenmill.train.runlog import RunLog, flat_params, peak_flops
from tokenmill.train.sample_log import SampleLog
from tokenmill.train.shared_memory import StreamingMemory, sweep_stale_segments
from tokenmill.typed_config import from_dict, to_dict

# Fault drills and tests: sleep this many seconds after each step, so that a
# SIGKILL sent from outside lands in the middle of a run.
STEP_DELAY_ENV = "TOKENMILL_STEP_DELAY"


class NonFiniteError(UserError):
    """Loss or gradient norm became NaN/inf and the config says stop."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.d: Dist = init_distributed(cfg.device)
        data.set_local_topology()
        self.run_dir = cfg.run_path
        self.cache_dir = cfg.run.cache(cfg.data.cache_dir)
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
        self.base_sha256 = base_fingerprint(self.base, self.lora, self.d)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.max_steps)
        self.forward = make_forward(self.model, self.model_cfg, self.info.eos_id)
        self.objective = objective_for(self.info.kind, self.model, self.forward, self.d.device)
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
        self.ckpt_root = cfg.run.checkpoints
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
        self.log = RunLog(self.run_dir, self.d.is_main, cfg.mlflow, flat_params(to_dict(cfg), to_dict(self.model_cfg)))
        self.checkpoints = CheckpointManager(cfg, self.model_cfg, self.base, self.base_sha256, self.ckpt_root,
                                             self.d, self.log)
        self.samples = SampleLog(cfg.run.sample_log(self.d.rank), cfg.record_sample_ids)
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
        """Start fresh or continue from the latest checkpoint (``checkpoint_manager``'s policy)."""
        resumed = self.checkpoints.start(self.model, self.optimizer, self.scheduler, self.loader)
        if resumed is None:
            self.log.event(
                "start", world_size=self.d.world_size, grad_accum=self.accum, model=to_dict(self.model_cfg),
                device=str(self.d.device), method=self.cfg.method, trainable_params=self.trainable_params,
            )
            return
        self.step, self.tokens = resumed.step, resumed.tokens
        self.samples.truncate(self.step)

    # ----- one step -----------------------------------------------------
    def train_step(self, micro_batches: list[data.Batch]) -> tuple[float, float]:
        """Forward/backward over the micro-batches; returns (loss, grad norm).

        Gradients are reduced across ranks only on the last micro-batch.
        """
        loss = self.objective.backward(micro_batches)
        max_norm = self.cfg.optim.grad_clip or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if hasattr(grad_norm, "full_tensor"):  # DTensor under FSDP2: the global norm
            grad_norm = grad_norm.full_tensor()
        return loss, float(grad_norm)

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
        with torch.no_grad():
            result = evaluate.validation_loss(self.objective, self.val_loader, self.cfg.eval_batches, self.d.device)
            if self.cfg.eval_prompts:
                self._answer_prompts()
        self.model.train()
        self.log.event("eval", step=self.step, **result)
        self.log.metrics(self.step, result)
        return result

    def _answer_prompts(self) -> None:
        """Every rank generates (FSDP needs all in each forward); rank 0 logs."""
        answers = evaluate.answer_prompts(self.model, self.info, self.cfg.eval_prompts, self.cfg.eval_max_new_tokens,
                                          self.d.device)
        self.log.event("eval_prompts", step=self.step,
                       answers=[{"prompt": a.prompt, "answer": a.answer} for a in answers])
        self.log.text(evaluate.answers_text(self.step, answers), f"eval_prompts/step_{self.step:07d}.jsonl")

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
        self.checkpoints.save(self.step, self.tokens, self.model, self.optimizer, self.scheduler, self.loader,
                              self.info.eos_id, self.info.bos_id)

    def export_hf(self) -> None:
        """The Hugging Face folder of the final checkpoint, written by rank 0."""
        from tokenmill.train.export import export

        out = self.cfg.run.export_out(self.cfg.export.out)
        final = checkpoint.step_dir(self.ckpt_root, self.step)
        if self.d.is_main:
            started = time.monotonic()
            # A LoRA run hands back both: the merged model and the adapter on its own.
            export(final, out, self.cfg.export, merge=self.lora, overwrite=True)
            if self.lora:
                export(final, self.cfg.run.adapter, self.cfg.export, fmt="peft", overwrite=True)
            self.log.event("export_hf", path=str(out), seconds=round(time.monotonic() - started, 3))
        dist.barrier()

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
            self.samples.record(self.step, batches)
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
    return train(from_dict(TrainConfig, config))
