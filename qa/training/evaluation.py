"""Scores of a reader: the dev part read with gold paragraphs (SQuAD's official normalisation,
shared with `qa eval`), the news dev set over the service's own chunks, and latency."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

from ..evaluate import exact_match, f1_score
from ..squad import load_squad


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
    from ..records import Passage

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


def _sentence_chunks(count, article_id: str, text: str, passage_tokens: int):
    """The service's own chunks of an article (qa.chunking), counted with the reader's tokenizer
    (`count`: texts -> their word pieces)."""
    from ..articles import make_article
    from ..chunking import ChunkingConfig, chunk_articles
    from ..records import Passage

    article = make_article({"id": article_id, "text": text})
    chunks = chunk_articles([article], count, ChunkingConfig(passage_tokens, 1))
    return [Passage(c.article_id, article.title, c.start, c.end, c.text, 1.0) for c in chunks]


def evaluate_news(reader, news_file: str | Path, corpus_dir: str | Path, passage_tokens: int = 200) -> dict[str, Any]:
    """Top-answer accuracy on news questions, read over ~200-token sentence chunks.

    An answerable question is read over all chunks of its gold article (EM/F1 of the top
    answer, an abstention scoring 0). A question without an article is read over the 8 chunks
    of the corpus that share the most words with it, and is right when the reader abstains.
    """
    with open(news_file, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    chunks: dict[str, list] = {}
    for path in sorted(Path(corpus_dir).glob("*.txt")):
        chunks[path.name] = _sentence_chunks(reader.count_tokens, path.stem, path.read_text(encoding="utf-8"), passage_tokens)
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
    from ..records import Passage

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
