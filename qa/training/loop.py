"""The training loop: a span head on MiniLM, fine-tuned with resumable checkpoints."""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import random
import re
import time
from pathlib import Path
from typing import Any, Sequence

from .data import DEFAULT_SEED, DEFAULT_TRAIN, base_model_path, synthetic_unanswerable
from .windows import build_features, collate_batch, load_tokenizer, shuffled_batches, usable_examples

log = logging.getLogger(__name__)
PROJECT_DIR = Path(__file__).resolve().parent.parent.parent


def layer_depth(name: str, layers: int) -> int:
    """Where a parameter sits: 0 for the embeddings, i + 1 for encoder layer i, layers + 1 for
    the span head (and anything else above the encoder)."""
    found = re.search(r"\.layer\.(\d+)\.", name)
    if found:
        return int(found.group(1)) + 1
    return 0 if "embeddings" in name else layers + 1


def _embedding_hook(kept: list, push=None):
    """A forward hook for the embeddings (the adversarial step): without `push` it keeps their
    output in `kept` for its gradient; with it, it moves that output by `push`."""
    def hook(_module, _inputs, output):
        if push is not None:
            return output + push
        if output.requires_grad:
            output.retain_grad()
            kept.append(output)
        return output
    return hook


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def train_reader(
    train_files: Sequence[str | Path] = DEFAULT_TRAIN,
    checkpoint_dir: str | Path = PROJECT_DIR / ".train" / "checkpoint",
    *,
    epochs: float = 2.0,
    lr: float = 8e-5,
    batch_size: int = 16,
    max_length: int = 256,
    stride: int = 96,
    seed: int = DEFAULT_SEED,
    limit: int | None = None,
    warmup: float = 0.1,
    weight_decay: float = 0.01,
    threads: int = 1,
    base_model: str | Path | None = None,
    bf16: bool = True,
    freeze_embeddings: bool = False,
    synthetic: float = 0.0,
    synthetic_kind: str = "mixed",
    layer_decay: float = 1.0,
    adversarial: float = 0.0,
    unanswerable_weight: float = 1.0,
    max_answer_tokens: int = 30,
    checkpoint_minutes: float = 10.0,
    resume: bool = False,
) -> dict[str, Any]:
    """Fine-tune a span head on MiniLM; saves a Hugging Face checkpoint into `checkpoint_dir`.

    Returns training statistics (examples, windows, steps, seconds). With `bf16` the forward and
    backward passes run under bfloat16 autocast (about twice as fast on AVX512-BF16 CPUs); the
    weights and optimizer state stay float32. A checkpoint of every finished epoch is kept in
    `checkpoint_dir/epoch-N`.

    `adversarial` > 0 adds a fast-gradient (FGM) step: each batch is read a second time with its
    embedding output pushed `adversarial` (L2, per window) along the gradient of the loss, and
    both losses are learned from. It doubles the cost of a step. Measured here it did not help
    (see the model card); it stays for reproducing that run.

    `unanswerable_weight` weighs the loss of every window of an unanswerable question: they
    are about a fifth of the training windows and half of SQuAD v2's dev questions.

    Answers longer than `max_answer_tokens` word pieces are left out: the reader never returns
    a span that long, so learning them only pulls it towards long answers (COVID-QA's).

    Every `checkpoint_minutes` the whole training state (weights, optimizer, schedule, step,
    random states) is saved to `checkpoint_dir/resume.pt`, written aside and renamed so that a
    kill never leaves half a file; `resume=True` carries on from it and ends where an
    uninterrupted run would.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForQuestionAnswering

    torch.set_num_threads(threads)
    seed_everything(seed)
    base = Path(base_model) if base_model else base_model_path()
    tokenizer = load_tokenizer(base)
    examples, sources = usable_examples(train_files, tokenizer, max_answer_tokens)
    for name, counts in sources.items():
        log.info("%s: %s", name, counts)
    if limit:
        examples = random.Random(seed).sample(examples, min(limit, len(examples)))
    made = synthetic_unanswerable(examples, synthetic, seed, synthetic_kind) if synthetic > 0 else []
    log.info("%d synthetic unanswerable questions (%d swapped words, %d other paragraphs)", len(made),
             sum(e.id.endswith("-swap") for e in made), sum(e.id.endswith("-elsewhere") for e in made))
    examples = examples + made
    features = build_features(examples, tokenizer, max_length, stride)
    n_pos = sum(1 for f in features if f[2] > 0)
    log.info(
        "training on %d questions (%d unanswerable): %d windows, %d with the answer",
        len(examples), sum(not e.answerable for e in examples), len(features), n_pos,
    )
    model = AutoModelForQuestionAnswering.from_pretrained(str(base))
    if freeze_embeddings:
        # Words unseen in the few thousand training questions keep their pretrained vectors.
        model.get_input_embeddings().weight.requires_grad_(False)
    model.train()
    embeddings = model.base_model.embeddings
    rng = random.Random(seed)
    steps_per_epoch = math.ceil(len(features) / batch_size)
    total_steps = max(1, int(round(steps_per_epoch * epochs)))
    warmup_steps = int(total_steps * warmup)
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict] = {}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decays = not any(k in n for k in no_decay)
        # Layer-wise decay: lower layers (general language) move less than upper ones.
        depth = layer_depth(n, layers)
        scale = layer_decay ** (layers + 1 - depth)
        group = groups.setdefault((depth, decays), {"params": [], "weight_decay": weight_decay if decays else 0.0,
                                                       "lr": lr * scale})
        group["params"].append(p)
    optimizer = torch.optim.AdamW(list(groups.values()), lr=lr)

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
    checkpoint_dir = Path(checkpoint_dir)
    resume_file = checkpoint_dir / "resume.pt"
    step, done_seconds, epoch_rng = 0, 0.0, rng.getstate()
    if resume and resume_file.is_file():
        state = torch.load(resume_file, weights_only=False)
        if state["total_steps"] != total_steps or state["windows"] != len(features):
            raise RuntimeError(f"{resume_file} is of another run ({state['windows']} windows, "
                               f"{state['total_steps']} steps; this one {len(features)}, {total_steps})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, done_seconds, epoch_rng = state["step"], state["seconds"], state["epoch_rng"]
        log.info("resumed from %s at step %d/%d", resume_file, step, total_steps)
    elif resume:
        log.info("no %s: starting from the beginning", resume_file)

    def save_state() -> None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        partial = resume_file.with_suffix(".pt.partial")
        torch.save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
            "step": step, "seconds": done_seconds + time.time() - t0, "epoch_rng": epoch_rng,
            "total_steps": total_steps, "windows": len(features),
        }, partial)
        os.replace(partial, resume_file)
        log.info("saved %s at step %d/%d", resume_file, step, total_steps)

    rng.setstate(epoch_rng)
    t0 = time.time()
    last_save = t0
    started_at = step
    running = collections.deque(maxlen=100)
    while step < total_steps:
        epoch_rng = rng.getstate()  # the batch order of this epoch can be drawn again on resume
        batches = shuffled_batches(features, batch_size, rng)
        for idx in batches[step % steps_per_epoch:]:
            if step >= total_steps:
                break
            ids, types, mask, starts, ends = collate_batch(features, idx, tokenizer.pad_token_id)
            weights = torch.tensor([unanswerable_weight if features[k][4] else 1.0 for k in idx])

            def batch_loss(hook=None):
                handle = embeddings.register_forward_hook(hook) if hook is not None else None
                try:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
                finally:
                    if handle is not None:
                        handle.remove()
                start_logits = out.start_logits.float().masked_fill(mask == 0, -1e4)
                end_logits = out.end_logits.float().masked_fill(mask == 0, -1e4)
                losses = (loss_fn(start_logits, starts) + loss_fn(end_logits, ends)) / 2
                return (losses * weights).sum() / weights.sum()

            kept: list = []
            loss = batch_loss(_embedding_hook(kept) if adversarial > 0 else None)
            loss.backward()
            if kept and kept[0].grad is not None:
                grad = kept[0].grad.detach().float()
                norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)
                batch_loss(_embedding_hook(kept, (adversarial * grad / norm).to(kept[0].dtype))).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            running.append(loss.item())
            if step % 50 == 0 or step == total_steps:
                elapsed = time.time() - t0
                log.info(
                    "step %d/%d epoch %.2f loss %.3f lr %.2e %.1f windows/s eta %.0fs",
                    step, total_steps, step / steps_per_epoch, sum(running) / len(running),
                    scheduler.get_last_lr()[0], (step - started_at) * batch_size / elapsed,
                    elapsed / (step - started_at) * (total_steps - step),
                )
            if step % steps_per_epoch == 0 and step < total_steps:
                epoch_dir = checkpoint_dir / f"epoch-{step // steps_per_epoch}"
                model.save_pretrained(str(epoch_dir))
                tokenizer.save_pretrained(str(epoch_dir))
                log.info("saved %s", epoch_dir)
            if time.time() - last_save >= checkpoint_minutes * 60 and step < total_steps:
                if step % steps_per_epoch == 0:
                    epoch_rng = rng.getstate()  # the next epoch's order is drawn from here
                save_state()
                last_save = time.time()
    seconds = done_seconds + time.time() - t0
    model.eval()
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(checkpoint_dir))
    tokenizer.save_pretrained(str(checkpoint_dir))
    stats = {
        "questions": len(examples),
        "unanswerable": sum(not e.answerable for e in examples),
        "windows": len(features),
        "windows_with_answer": n_pos,
        "steps": total_steps,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "max_length": max_length,
        "stride": stride,
        "seed": seed,
        "bf16": bf16,
        "threads": threads,
        "freeze_embeddings": freeze_embeddings,
        "synthetic_unanswerable": synthetic,
        "synthetic_kind": synthetic_kind,
        "synthetic_questions": len(made),
        "layer_decay": layer_decay,
        "adversarial": adversarial,
        "unanswerable_weight": unanswerable_weight,
        "max_answer_tokens": max_answer_tokens,
        "sources": sources,
        "train_seconds": round(seconds, 1),
    }
    if base_model and (Path(base_model) / "train_stats.json").is_file():
        # Started from an earlier run: keep its record, so the model card tells both.
        before = json.loads((Path(base_model) / "train_stats.json").read_text())
        stats["init_stats"] = before
        stats["init_work"] = str(Path(base_model).parent)
        stats["train_seconds_total"] = round(seconds + before.get("train_seconds_total", before["train_seconds"]), 1)
    (checkpoint_dir / "train_stats.json").write_text(json.dumps(stats, indent=2))
    log.info("trained in %.0fs, checkpoint in %s", seconds, checkpoint_dir)
    return stats
