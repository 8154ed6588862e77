"""Questions and paragraphs cut into the token windows the span model reads, and batches of them."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from ..squad import SquadExample

MAX_QUESTION_TOKENS = 64


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
    """Training windows: (input_ids, token_type_ids, start, end, of an unanswerable question);
    start = end = 0 is "no answer"."""
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
            features.append((ids, type_ids, start_pos, end_pos, not example.answerable))
    return features


def usable_examples(train_files, tokenizer, max_answer_tokens: int):
    """The training questions of `train_files` (de-duplicated by id), without those whose answer is
    longer than `max_answer_tokens` word pieces (the longest span the reader returns), and the
    counts per source (`data.source_counts`)."""
    from .data import load_squad, source_counts

    examples = load_squad(train_files)
    too_long = {e.id for e, n in zip(examples, answer_lengths(tokenizer, examples)) if n > max_answer_tokens}
    return [e for e in examples if e.id not in too_long], source_counts(examples, too_long)


def answer_lengths(tokenizer, examples: Sequence[SquadExample]) -> list[int]:
    """Word pieces in each question's first answer (0 for an unanswerable one)."""
    texts = [e.answers[0][0] if e.answers else "" for e in examples]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def shuffled_batches(features, batch_size: int, rng: random.Random):
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


def collate_batch(features, idx, pad_id: int):
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
