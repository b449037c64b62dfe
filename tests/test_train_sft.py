"""Fine-tuning on SFT shards: the masked loss of packed rows equals per-example losses,
normalised over the global batch (gradient accumulation and ranks), eval prompts logged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from tokenmill.train import data, evaluate, objective
from tokenmill.train.config import DataConfig, ModelConfig, ModelSpec, OptimConfig, TrainConfig
from train_fixture import write_sft_fixture
from tokenmill.train.parallelize import build_model
from tokenmill.train.model import GPT, documents_from_ids, masked_lm_loss
from tokenmill.train.shared_memory import StreamingMemory
from test_train_runs import events, run_train

from ranks import spawn_ranks

SEQ_LEN = 96


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_sft_fixture(tmp_path_factory.mktemp("sft"), n_train=160, n_val=40, seq_len=SEQ_LEN)


def val_rows(shards) -> data.Batch:
    """The whole val split as one batch: long examples alone first, packed short ones last."""
    info = data.read_dataset_info(str(shards), shards / "cache")
    n = info.splits["val"]["sequences"]
    with StreamingMemory():
        loader = data.build_loader(info, DataConfig(clean_stale_shm=False), shards / "cache", "val", n,
                                   shuffle=False, drop_last=False)
        return next(iter(loader))


def uneven_rows(shards) -> data.Batch:
    """Two single-example windows and two packed ones."""
    batch = val_rows(shards)
    n = len(batch.tokens)
    return data.Batch(*(t[[0, 1, n - 2, n - 1]] for t in batch))


def random_batch(rows: int, T: int, vocab: int, seed: int) -> data.Batch:
    """Rows of 1-3 examples then padding; targets at random, never an example's first token."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (rows, T))
    docs, mask = np.zeros((rows, T), np.int64), np.zeros((rows, T), bool)
    for r in range(rows):
        pos = 0
        for d in range(1, rng.integers(1, 4) + 1):
            n = int(rng.integers(3, T // 3))
            docs[r, pos:pos + n] = d
            mask[r, pos + 1:pos + n] = rng.random(n - 1) < 0.5
            pos += n
    return data.Batch(torch.from_numpy(tokens), torch.arange(rows), torch.from_numpy(mask), torch.from_numpy(docs))


# ----- the document layout ---------------------------------------------------------------

def test_documents_from_ids_restart_positions_and_isolate_padding():
    docs = documents_from_ids(torch.tensor([[1, 1, 1, 2, 2, 0, 0]]))
    assert docs.positions.tolist() == [[0, 1, 2, 0, 1, 0, 0]]
    ids = docs.ids[0].tolist()
    assert ids[:5] == [1, 1, 1, 2, 2] and len(set(ids[5:])) == 2 and min(ids[5:]) < 0  # each pad on its own


def test_masked_loss_counts_targets_at_the_predicted_token():
    logits = torch.zeros(1, 4, 5)
    logits[0, 1, 3] = 10.0  # position 1 predicts token 2 = 3, well
    tokens = torch.tensor([[0, 1, 3, 4]])
    total, count = masked_lm_loss(logits, tokens, torch.tensor([[0, 0, 1, 0]]))
    assert count.item() == 1
    want = F.cross_entropy(logits[0, 1:2], tokens[0, 2:3])
    torch.testing.assert_close(total, want)


def test_shards_carry_the_chat_template_for_eval_prompts(shards):
    import hashlib
    import json

    from tokenmill.chat.template import CHATML

    info = data.read_dataset_info(str(shards), shards / "cache")
    assert info.kind == "sft" and info.pad_id is not None
    tok, template = evaluate.load_prompting(info)
    assert template.source == CHATML and template.eos_token == "<|im_end|>"
    dataset = json.loads((shards / "dataset.json").read_text())
    assert dataset["template_sha256"] == hashlib.sha256(CHATML.encode()).hexdigest()
    ids = evaluate.prompt_ids(tok, template, info, "What does the cat do?")
    text = tok.decode(ids, skip_special_tokens=False)
    assert text == "<|im_start|>user\nWhat does the cat do?<|im_end|>\n<|im_start|>assistant\n"


# ----- packed == one example at a time ---------------------------------------------------

@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_masked_loss_of_packed_rows_equals_per_example_loss(shards, position):
    batch = val_rows(shards)
    assert (batch.doc_ids.max(dim=1).values >= 2).any() and (batch.doc_ids == 0).any()  # packed, padded
    info = data.read_dataset_info(str(shards), shards / "cache")
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=info.vocab_size, seq_len=SEQ_LEN,
                      position=position, norm="rmsnorm", mlp="swiglu")
    model = GPT(cfg)
    model.init_weights(5)
    with torch.no_grad():
        logits = model(batch.tokens, documents_from_ids(batch.doc_ids))
        assert torch.isfinite(logits).all()
        total, count = masked_lm_loss(logits, batch.tokens, batch.loss_mask)
        want_sum, want_count = 0.0, 0
        for row in range(len(batch.tokens)):
            for d in batch.doc_ids[row].unique().tolist():
                if d == 0:
                    continue
                where = batch.doc_ids[row] == d
                tokens, mask = batch.tokens[row][where][None], batch.loss_mask[row][where]
                alone = model(tokens)[0, :-1]  # the example by itself, causal attention
                losses = F.cross_entropy(alone, tokens[0, 1:], reduction="none")
                want_sum += float(losses[mask[1:]].sum())
                want_count += int(mask[1:].sum())
    assert count.item() == want_count == int(batch.loss_mask[:, 1:].sum())
    assert (total / count).item() == pytest.approx(want_sum / want_count, rel=1e-5)


# ----- gradient accumulation 1x4 == 4x1 (in-process Trainer) -----------------------------

def sft_config(shards, run_dir, **overrides) -> TrainConfig:
    values = dict(
        device="cpu", model=ModelSpec(d_model=32, n_layers=1, n_heads=2, position="rope"),
        data=DataConfig(shards=str(shards), clean_stale_shm=False), optim=OptimConfig(grad_clip=0.0),
        run_dir=str(run_dir), max_steps=4, global_batch_size=4, micro_batch_size=4, log_every=1, mlflow=False,
    )
    values.update(overrides)
    return TrainConfig(**values)


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.full_tensor().clone() for n, p in model.named_parameters()}


def rows(batch: data.Batch, lo: int, hi: int) -> data.Batch:
    return data.Batch(*(t[lo:hi] for t in batch))


def test_grad_accumulation_1x4_equals_4x1(shards, tmp_path, make_trainer):
    trainer = make_trainer(sft_config(shards, tmp_path))
    trainer.maybe_resume()
    batch = uneven_rows(shards)
    assert batch.doc_ids[-1].max() >= 2
    counts = batch.loss_mask[:, 1:].sum(dim=1).tolist()
    assert len(set(counts)) > 1, counts  # uneven target counts per micro-batch
    loss_1x4, _ = trainer.train_step([batch])
    one = grads(trainer.model)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss_4x1, _ = trainer.train_step([rows(batch, i, i + 1) for i in range(4)])
    four = grads(trainer.model)
    assert loss_1x4 == pytest.approx(loss_4x1, rel=1e-6)
    for name in one:
        assert one[name].abs().max() > 0, name
        torch.testing.assert_close(four[name], one[name], rtol=1e-5, atol=1e-7, msg=name)
    # The test can fail: a mean of per-micro-batch means gives another loss.
    with torch.no_grad():
        means = []
        for i in range(4):
            b = rows(batch, i, i + 1)
            total, count = masked_lm_loss(trainer.forward(b.tokens, b.doc_ids), b.tokens, b.loss_mask)
            means.append((total / count).item())
    assert abs(np.mean(means) - loss_1x4) > 1e-4


# ----- 2 gloo ranks == 1 process -----------------------------------------------------

CFG = ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=97, seq_len=32, mlp="swiglu", position="rope")
SEED = 3


def global_batch() -> data.Batch:
    return random_batch(8, CFG.seq_len, CFG.vocab_size, seed=11)


def forward_of(model):
    return lambda tokens, doc_ids: model(tokens, documents_from_ids(doc_ids))


def fsdp_worker(rank: int, world: int, out: str) -> None:
    """Rank r takes rows [4r, 4r+4) as 2 micro-batches of 2; rank 0 saves the gradients."""
    model = build_model(CFG, torch.device("cpu"))
    model.init_weights(SEED)
    mine = rows(global_batch(), 4 * rank, 4 * rank + 4)
    loss = objective.masked_backward(model, forward_of(model), [rows(mine, 0, 2), rows(mine, 2, 4)], torch.device("cpu"))
    result = {"loss": loss, "grads": {n: p.grad.full_tensor() for n, p in model.named_parameters()}}
    if rank == 0:
        torch.save(result, out)


def test_masked_grads_on_two_ranks_equal_single_process(tmp_path):
    batch = global_batch()
    per_rank = [int(rows(batch, 4 * r, 4 * r + 4).loss_mask[:, 1:].sum()) for r in range(2)]
    assert per_rank[0] != per_rank[1]  # uneven: a per-rank mean would differ
    out = str(tmp_path / "grads.pt")
    spawn_ranks(fsdp_worker, out)
    got = torch.load(out)
    model = GPT(CFG)
    model.init_weights(SEED)
    total, count = masked_lm_loss(forward_of(model)(batch.tokens, batch.doc_ids), batch.tokens, batch.loss_mask)
    (total / count).backward()
    assert got["loss"] == pytest.approx((total / count).item(), rel=1e-6)
    for name, p in model.named_parameters():
        assert p.grad.abs().max() > 0, name
        torch.testing.assert_close(got["grads"][name], p.grad, rtol=1e-5, atol=1e-7, msg=name)


# ----- an SFT run through the command line ---------------------------------------------

def test_sft_run_eval_loss_falls_and_prompts_are_answered(shards, tmp_path):
    run_dir = tmp_path / "run"
    config = {
        "device": "cpu", "seed": 7, "max_steps": 30, "global_batch_size": 8, "micro_batch_size": 2,
        "model": {"d_model": 64, "n_layers": 2, "n_heads": 4, "position": "rope"},
        "data": {"shards": str(shards), "clean_stale_shm": False},
        "optim": {"lr": 3e-3, "warmup_steps": 3},
        "checkpoint": {"every_steps": 100},
        "eval_every": 10, "eval_batches": 4, "log_every": 10, "mlflow": True,
        "eval_prompts": ["What does the cat do?", "What does a farmer do?"], "eval_max_new_tokens": 12,
        "run_dir": str(run_dir),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run_train(path, nproc=2)
    losses = [e["val_loss"] for e in events(run_dir, "eval")]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.5, losses
    answered = events(run_dir, "eval_prompts")
    assert [e["step"] for e in answered] == [10, 20, 30]
    assert [a["prompt"] for a in answered[-1]["answers"]] == config["eval_prompts"]
    assert all(isinstance(a["answer"], str) for e in answered for a in e["answers"])
    # The trained model answers every prompt with words, not an immediate end of turn.
    final = {a["prompt"]: a["answer"] for a in answered[-1]["answers"]}
    assert all(answer.strip() for answer in final.values()), final
    assert (run_dir / "tokenizer_config.json").is_file()  # the template travels with the run
    artifacts = list((run_dir / "mlruns").rglob("eval_prompts/step_0000030.jsonl"))
    assert len(artifacts) == 1 and "What does the cat do?" in artifacts[0].read_text()
