"""`qa tune-reader`: tune the hybrid reader's weights on the dev sets, end to end.

Candidates are collected once per question (retrieval, span model, sentence support), then a
small grid of weights is scored on the SQuAD v2 dev part and the news dev set together: each
answerable question counts the F1 of the best answer, each unanswerable one 1 when abstained.
Only dev data is used; the weights go into `reader.json` under "hybrid".
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .articles import analyse
from .engine import Engine
from .evaluate import f1_score, load_news, load_squad
from .readers.factory import SHIPPED_READER
from .readers.hybrid import HybridReader, HybridWeights
from .settings import Settings

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
DEV_SETS = (ROOT / "data" / "squad" / "dev-v2.0-part.json", ROOT / "data" / "news_dev.jsonl",
            ROOT / "data" / "news_unanswerable_dev.jsonl")
GRID = {
    "span": (0.5, 1.0, 1.5),
    "sentence": (0.5, 1.0, 1.5, 2.0),
    "form": (0.0, 0.2, 0.4),
    "counted": (0.0, 0.3, 0.6),
    "echo": (0.0, 0.5, 1.0),
    "min_support": (0.0, 0.3, 0.4, 0.5),
}


def collect(files: Sequence[Path], settings: Settings) -> list[dict]:
    """For every question: gold answers and every candidate's features and text."""
    rows = []
    for path in files:
        with tempfile.TemporaryDirectory() as directory:
            engine = Engine(dataclasses.replace(settings, index_dir=Path(directory), reader="hybrid"))
            if path.suffix == ".json":
                articles, questions = load_squad(path)
                engine.ingest([analyse(a) for a in articles])
            else:
                questions = load_news(path)
                engine.ingest_paths([settings.corpus_dir])
            reader: HybridReader = engine.reader
            for question in questions:
                passages = engine.search(question.text, settings.passages)
                candidates, best_support = reader.candidates(question.text, passages)
                rows.append({
                    "set": path.name,
                    "answers": question.answers,
                    "best_support": best_support,
                    "features": np.array([[c.margin, c.support, c.form, c.counted, c.echo] for c in candidates]).reshape(-1, 5),
                    "texts": [passages[c.passage].text[c.start:c.end] for c in candidates],
                })
            engine.close()
    return rows


# Abstaining may cost answerable questions at most this much F1 against never abstaining, on
# each dev set; the same rule sets the span model's own threshold (qa/training.py). Within it, the
# weights and threshold that abstain on the most unanswerable questions (best v2 overall) win.
ANSWER_COST = 0.03


def objective(rows: list[dict], weights: HybridWeights) -> tuple[dict[str, float], dict[str, float]]:
    """Per dev set: answerable F1 (an abstention counts 0) and v2 overall (F1 on answerable
    questions, 1 for each unanswerable one abstained)."""
    answerable: dict[str, list[float]] = {}
    overall: dict[str, list[float]] = {}
    for row in rows:
        text = None
        if len(row["texts"]) and row["best_support"] >= weights.min_support:
            f = row["features"]
            scores = (weights.span / (1 + np.exp(-f[:, 0] / 4)) + weights.sentence * f[:, 1] + weights.form * f[:, 2]
                      + weights.counted * f[:, 3] - weights.echo * f[:, 4])
            best = int(np.argmax(scores))
            if scores[best] >= weights.threshold:
                text = row["texts"][best]
        if row["answers"]:
            score = max(f1_score(text, g) for g in row["answers"]) if text is not None else 0.0
            answerable.setdefault(row["set"], []).append(score)
        else:
            score = float(text is None)
        overall.setdefault(row["set"], []).append(score)
    return ({name: float(np.mean(v)) for name, v in answerable.items()},
            {name: float(np.mean(v)) for name, v in overall.items()})


def tune(rows: list[dict]) -> tuple[HybridWeights, dict[str, float]]:
    """The weights whose answers score best, with the highest threshold that keeps every dev
    set's answerable F1 within ANSWER_COST of never abstaining."""
    best, best_key, best_means = HybridWeights(), None, {}
    for span, sentence, form, counted, echo in itertools.product(*(GRID[k] for k in ("span", "sentence", "form", "counted", "echo"))):
        top = span + sentence + form
        free = HybridWeights(span, sentence, form, counted, echo, 0.0, -1e9)
        ceiling, _ = objective(rows, free)  # never abstaining: how well the weights rank answers
        for min_support in GRID["min_support"]:
            for threshold in np.linspace(0.2 * top, 0.9 * top, 15):
                weights = HybridWeights(span, sentence, form, counted, echo, min_support, round(float(threshold), 3))
                answered, overall = objective(rows, weights)
                if any(answered[name] < ceiling[name] - ANSWER_COST for name in ceiling):
                    continue
                key = (float(np.mean(list(overall.values()))), float(np.mean(list(answered.values()))))
                if best_key is None or key > best_key:
                    best, best_key, best_means = weights, key, {**{f"{k} answerable F1": v for k, v in answered.items()},
                                                              **{f"{k} v2 overall": v for k, v in overall.items()}}
    return best, best_means


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qa tune-reader", description=__doc__)
    parser.add_argument("--reader-dir", default=str(SHIPPED_READER))
    parser.add_argument("--dry-run", action="store_true", help="print the weights, do not save them")
    args = parser.parse_args(argv)
    rows = collect(DEV_SETS, Settings.from_env())
    log.info("collected candidates for %d questions", len(rows))
    weights, means = tune(rows)
    print("weights:", dataclasses.asdict(weights))
    print("dev sets:", {k: round(v, 4) for k, v in means.items()})
    if not args.dry_run:
        path = Path(args.reader_dir) / "reader.json"
        config = json.loads(path.read_text())
        config["hybrid"] = dataclasses.asdict(weights)
        path.write_text(json.dumps(config, indent=2) + "\n")
        print(f"saved to {path}")
    return 0
