"""`qa tune-reader`: choose the default reader and its no-answer settings on the dev sets.

Retrieval and the span model run once per dev question (the SQuAD v2 dev part, news_dev,
news_unanswerable_dev and news_nearmiss_dev, end to end over their own articles); every candidate answer is kept with
its features and its F1 against the gold answers. Two readers are then tuned on the same rows:

- `neural`: the span model's best span, answered when its margin (adjusted by retrieval
  support) reaches `threshold`;
- `hybrid`: the span model's candidates re-ranked with sentence support and answer-form rules,
  over a small grid of weights (`qa/readers/hybrid.py`).

Both also get the retrieval gate `min_coverage`: no answer when the passages hold less than that
share of the question's rare words (`Retriever.coverage`). A setting is allowed when, on every
dev set with answerable questions, answerable F1 stays within ANSWER_COST of never abstaining;
among those, the best mean v2 overall over the dev sets wins (F1 on answerable questions, 1 for
each unanswerable one abstained), then the best mean answerable F1. The reader with the better
result becomes the default (`"default"` in reader.json): the default follows the measurement.
Every figure is printed with a 95% bootstrap interval over its questions. Only dev data is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .evaluate import bootstrap_interval, dev_engine, dev_questions, f1_score
from .embedding import make_encoder
from .readers.factory import SHIPPED_READER, hybrid
from .readers.neural import load_neural_reader
from .readers.rules import RuleReader
from .readers.hybrid import HybridReader, HybridWeights
from .settings import Settings
from .training.export import write_model_card

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
DEV_SETS = (ROOT / "data" / "squad" / "dev-v2.0-part.json", ROOT / "data" / "news_dev.jsonl",
            ROOT / "data" / "news_unanswerable_dev.jsonl", ROOT / "data" / "news_nearmiss_dev.jsonl")
GRID = {
    "span": (0.5, 1.0, 1.5),
    "sentence": (0.5, 1.0, 1.5, 2.0),
    "form": (0.0, 0.2, 0.4),
    "counted": (0.0, 0.3, 0.6),
    "echo": (0.0, 0.5, 1.0),
    "min_support": (0.0, 0.3, 0.4, 0.5),
}
COVERAGE_GRID = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
# The names gate: off (None), or no answer when a name of the question is in no passage.
NAMES_GRID = (None, 0)
# Abstaining may cost answerable questions at most this much F1 against never abstaining, on
# each dev set; the same rule sets the span model's own threshold (qa/training). Within it, the
# setting that abstains on the most unanswerable questions (best v2 overall) wins.
ANSWER_COST = 0.03


@dataclasses.dataclass(frozen=True)
class Row:
    """One dev question: what retrieval and the span model found for it."""

    set: str
    answerable: bool
    coverage: float
    best_support: float
    features: np.ndarray  # hybrid candidates: [margin, support, form, counted, echo]
    f1: np.ndarray  # each hybrid candidate's F1 against the gold answers (0 if unanswerable)
    margins: np.ndarray  # the span model's candidates: adjusted margin
    span_f1: np.ndarray  # their F1
    texts: tuple[str, ...] = ()
    unmatched_names: int = 0  # the question's names that no passage holds


def collect(files: Sequence[Path], settings: Settings, reader_dir: Path = SHIPPED_READER) -> list[Row]:
    """For every question: gold answers and every candidate's features and F1, read by the span
    model in `reader_dir` (the shipped one, or a newly trained one to compare)."""
    rows = []
    encoder = make_encoder(settings)
    for path in files:
        with dev_engine(path, settings, encoder=encoder,
                        reader=hybrid(load_neural_reader(reader_dir), RuleReader(encoder), reader_dir)) as engine:
            questions = dev_questions(path)
            reader: HybridReader = engine.reader
            spans = reader.span_reader
            for question in questions:
                passages = engine.search(question.text, settings.passages)
                found = spans.spans(question.text, passages)  # read once, for both readers
                candidates, best_support = reader.candidates(question.text, passages, found)
                texts = [passages[c.passage].text[c.start:c.end] for c in candidates]
                margins = [s.margin + spans.support_weight * spans.retrieval_support(passages[s.passage]) for s in found]
                span_texts = [passages[s.passage].text[s.start:s.end] for s in found]

                def scored(candidate_texts):
                    if not question.answers:
                        return np.zeros(len(candidate_texts))
                    return np.array([max(f1_score(t, g) for g in question.answers) for t in candidate_texts])
                rows.append(Row(
                    path.name, bool(question.answers), engine.retriever.coverage(question.text, passages), best_support,
                    np.array([[c.margin, c.support, c.form, c.counted, c.echo] for c in candidates]).reshape(-1, 5),
                    scored(texts), np.array(margins), scored(span_texts), tuple(texts),
                    engine.retriever.unmatched_names(question.text, passages),
                ))
    return rows


def hybrid_scores(rows: list[Row], weights: HybridWeights) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the best candidate's blended score (-inf without candidates) and its F1."""
    best, f1 = np.full(len(rows), -np.inf), np.zeros(len(rows))
    for i, row in enumerate(rows):
        if len(row.features):
            f = row.features
            scores = (weights.span / (1 + np.exp(-f[:, 0] / 4)) + weights.sentence * f[:, 1] + weights.form * f[:, 2]
                      + weights.counted * f[:, 3] - weights.echo * f[:, 4])
            k = int(np.argmax(scores))
            best[i], f1[i] = scores[k], row.f1[k]
    return best, f1


def neural_scores(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the span model's best adjusted margin (-inf without candidates) and its F1."""
    best, f1 = np.full(len(rows), -np.inf), np.zeros(len(rows))
    for i, row in enumerate(rows):
        if len(row.margins):
            k = int(np.argmax(row.margins))
            best[i], f1[i] = row.margins[k], row.span_f1[k]
    return best, f1


class Outcome:
    """Per dev set: answerable F1 (an abstention scores 0) and v2 overall, for one decision."""

    def __init__(self, rows: list[Row]):
        self.sets = sorted({r.set for r in rows})
        self.set_of = np.array([self.sets.index(r.set) for r in rows])
        self.answerable = np.array([r.answerable for r in rows])

    def per_question(self, f1: np.ndarray, answered: np.ndarray) -> np.ndarray:
        """Each question's v2 score: the answer's F1, or 1 for an unanswerable one abstained."""
        return np.where(self.answerable, f1 * answered, 1.0 - answered)

    def scores(self, f1: np.ndarray, answered: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        value = self.per_question(f1, answered)
        answerable, overall = {}, {}
        for k, name in enumerate(self.sets):
            here = self.set_of == k
            if (here & self.answerable).any():
                answerable[name] = float(value[here & self.answerable].mean())
            overall[name] = float(value[here].mean())
        return answerable, overall


def _answered(best: np.ndarray, support: np.ndarray, coverage: np.ndarray, unmatched: np.ndarray,
              threshold: float, min_support: float, min_coverage: float, max_unmatched: int | None) -> np.ndarray:
    """Which questions one setting answers: the engine's gates and the reader's threshold."""
    names = np.ones(len(best), bool) if max_unmatched is None else unmatched <= max_unmatched
    return np.isfinite(best) & (best >= threshold) & (support >= min_support) & (coverage >= min_coverage) & names


def _key(answerable: dict[str, float], overall: dict[str, float]) -> tuple[float, float]:
    """What a setting is judged by: mean v2 overall over the dev sets, then mean answerable F1
    (rounded as `_search` rounds them)."""
    return round(float(np.mean(list(overall.values()))), 12), round(float(np.mean(list(answerable.values()))), 12)


def _search(outcome: Outcome, best: np.ndarray, f1: np.ndarray, support: np.ndarray, coverage: np.ndarray,
            unmatched: np.ndarray, thresholds, min_supports) -> tuple[tuple, dict] | None:
    """The best (threshold, min_support, min_coverage, max_unmatched_names) for one way of
    scoring candidates.

    Every setting of the grid is judged at once, as one row of a matrix of answered questions;
    the winner is the one a loop over the grid in this order, keeping each strictly better key,
    would keep (the first of equal keys). Keys are rounded to 12 decimals, so that settings whose
    means are equal but were summed in another order tie."""
    has = np.isfinite(best)
    ceiling, _ = outcome.scores(f1, has)
    grid = list(itertools.product(NAMES_GRID, min_supports, COVERAGE_GRID, thresholds))
    names = np.array([np.ones(len(best), bool) if gate is None else unmatched <= gate for gate in NAMES_GRID])
    which = np.array([NAMES_GRID.index(gate) for gate, *_ in grid])
    min_support, min_coverage, threshold = (np.array([setting[k] for setting in grid], dtype=float)[:, None]
                                            for k in (1, 2, 3))
    answered = (has & (best >= threshold) & (support >= min_support) & (coverage >= min_coverage) & names[which])
    value = np.where(outcome.answerable, f1 * answered, 1.0 - answered)
    overall, answerable, allowed = [], [], np.ones(len(grid), bool)
    for k, name in enumerate(outcome.sets):
        here = outcome.set_of == k
        if (here & outcome.answerable).any():
            mean = value[:, here & outcome.answerable].mean(axis=1)
            answerable.append(mean)
            allowed &= ~(mean < ceiling[name] - ANSWER_COST)
        overall.append(value[:, here].mean(axis=1))
    if not allowed.any():
        return None
    keys = np.round(np.stack([np.mean(np.stack(overall, axis=1), axis=1),
                              np.mean(np.stack(answerable, axis=1), axis=1) if answerable else np.full(len(grid), np.nan)],
                             axis=1), 12)
    candidates = np.flatnonzero(allowed)
    top = candidates[np.lexsort((candidates, -keys[candidates, 1], -keys[candidates, 0]))[0]]
    gate, min_support, min_coverage, threshold = grid[top]
    return ((float(keys[top, 0]), float(keys[top, 1])),
            {"threshold": round(float(threshold), 3), "min_support": min_support, "min_coverage": min_coverage,
             "max_unmatched_names": gate})


def blends() -> Iterator[tuple[HybridWeights, np.ndarray]]:
    """Every blend of the hybrid's weights the tuner tries (gates open, no threshold), with the
    thresholds it tries for it: between 0.2 and 0.9 of the most its positive terms can reach."""
    for span, sentence, form, counted, echo in itertools.product(*(GRID[k] for k in ("span", "sentence", "form", "counted", "echo"))):
        ceiling = span + sentence + form
        yield HybridWeights(span, sentence, form, counted, echo, 0.0, -1e9), np.linspace(0.2 * ceiling, 0.9 * ceiling, 15)


def tune(rows: list[Row]) -> dict[str, dict]:
    """The best setting of each reader: {"neural": {...}, "hybrid": {...}}, each with its key
    (mean v2 overall, mean answerable F1) and the answered mask it gives."""
    outcome = Outcome(rows)
    support = np.array([r.best_support for r in rows])
    coverage = np.array([r.coverage for r in rows])
    unmatched = np.array([r.unmatched_names for r in rows])
    results: dict[str, dict] = {}

    best, f1 = neural_scores(rows)
    finite = best[np.isfinite(best)]
    thresholds = np.unique(np.round(np.quantile(finite, np.linspace(0.0, 0.9, 46)), 3)) if finite.size else [0.0]
    found = _search(outcome, best, f1, np.ones(len(rows)), coverage, unmatched, [-1e9, *thresholds], (0.0,))
    if found:
        setting = found[1]
        results["neural"] = {"key": found[0], "threshold": setting["threshold"], "min_coverage": setting["min_coverage"],
                             "max_unmatched_names": setting["max_unmatched_names"], "best": best, "f1": f1}

    top_key, top = None, None
    for weights, thresholds in blends():
        best, f1 = hybrid_scores(rows, weights)
        found = _search(outcome, best, f1, support, coverage, unmatched, [-1e9, *thresholds], GRID["min_support"])
        if found and (top_key is None or found[0] > top_key):
            top_key = found[0]
            top = {"key": found[0], "weights": dataclasses.replace(weights, **found[1]), "best": best, "f1": f1}
    if top:
        results["hybrid"] = top
    return results


def measure(rows: list[Row], config: dict) -> dict[str, dict]:
    """The settings a reader.json holds, as they stand (no search): the same shape as `tune`'s."""
    outcome = Outcome(rows)
    results: dict[str, dict] = {}
    best, f1 = neural_scores(rows)
    result = {"best": best, "f1": f1, "threshold": config.get("threshold", 0.0),
              "min_coverage": config.get("min_coverage", 0.0), "max_unmatched_names": config.get("max_unmatched_names")}
    results["neural"] = result
    weights = HybridWeights(**config.get("hybrid", {}))
    best, f1 = hybrid_scores(rows, weights)
    results["hybrid"] = {"best": best, "f1": f1, "weights": weights}
    for result in results.values():
        result["key"] = _key(*outcome.scores(result["f1"], answered_mask(rows, result)))
    return results


def answered_mask(rows: list[Row], result: dict) -> np.ndarray:
    """Which questions a tuned setting answers."""
    coverage = np.array([r.coverage for r in rows])
    unmatched = np.array([r.unmatched_names for r in rows])
    if "weights" in result:
        w = result["weights"]
        support = np.array([r.best_support for r in rows])
        return _answered(result["best"], support, coverage, unmatched, w.threshold, w.min_support, w.min_coverage,
                         w.max_unmatched_names)
    return _answered(result["best"], np.ones(len(rows)), coverage, unmatched, result["threshold"], 0.0,
                     result["min_coverage"], result["max_unmatched_names"])


def report(rows: list[Row], results: dict[str, dict]) -> dict[str, dict[str, str]]:
    """Each reader's figures per dev set, with 95% bootstrap intervals; and, paired, the
    difference in v2 overall between the two readers."""
    outcome = Outcome(rows)
    lines: dict[str, dict[str, str]] = {}
    values = {}
    for name, result in results.items():
        answered = answered_mask(rows, result)
        per_question = outcome.per_question(result["f1"], answered)
        values[name] = per_question
        for k, dev in enumerate(outcome.sets):
            here = outcome.set_of == k
            figures = {}
            if (here & outcome.answerable).any():
                lo, hi = bootstrap_interval(per_question[here & outcome.answerable])
                figures["answerable F1"] = f"{per_question[here & outcome.answerable].mean():.3f} [{lo:.3f}, {hi:.3f}]"
                figures["answerable abstained"] = f"{int((~answered[here & outcome.answerable]).sum())}/{int((here & outcome.answerable).sum())}"
            if (here & ~outcome.answerable).any():
                figures["unanswerable abstained"] = f"{int((~answered[here & ~outcome.answerable]).sum())}/{int((here & ~outcome.answerable).sum())}"
            lo, hi = bootstrap_interval(per_question[here])
            figures["v2 overall"] = f"{per_question[here].mean():.3f} [{lo:.3f}, {hi:.3f}]"
            lines[f"{name} {dev}"] = figures
    if len(values) == 2:
        difference = values["hybrid"] - values["neural"]
        for k, dev in enumerate(outcome.sets):
            here = outcome.set_of == k
            lo, hi = bootstrap_interval(difference[here])
            lines[f"hybrid - neural {dev}"] = {"v2 overall": f"{difference[here].mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"}
    return lines


def saved(config: dict, results: dict[str, dict], lines: dict[str, dict[str, str]], how: str) -> dict:
    """reader.json's `config` with the settings of `results` (from `tune` or `measure`), the
    default reader the measurement picks (the higher key), and the report `lines`."""
    config = dict(config)
    chosen = max(results, key=lambda name: results[name]["key"])
    if "hybrid" in results:
        config["hybrid"] = dataclasses.asdict(results["hybrid"]["weights"])
    if "neural" in results:
        config["threshold"] = results["neural"]["threshold"]
        config["min_coverage"] = results["neural"]["min_coverage"]
        config["max_unmatched_names"] = results["neural"]["max_unmatched_names"]
    if config.get("default") != chosen:
        config.pop("default_why", None)  # the reason a default was kept against the key, if any
    config["default"] = chosen
    config["tuning"] = {"date": datetime.date.today().isoformat(), "how": how, "report": lines}
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qa tune-reader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader-dir", default=str(SHIPPED_READER),
                        help="the reader folder whose span model is tuned, and where its settings are saved")
    parser.add_argument("--dry-run", action="store_true", help="print the settings, do not save them")
    parser.add_argument("--measure", action="store_true",
                        help="do not tune: measure the settings reader.json holds (and save the figures, unless --dry-run)")
    args = parser.parse_args(argv)
    path = Path(args.reader_dir) / "reader.json"
    rows = collect(DEV_SETS, Settings.from_env(), Path(args.reader_dir))
    log.info("collected candidates for %d questions", len(rows))
    results = measure(rows, json.loads(path.read_text())) if args.measure else tune(rows)
    if not results:
        print("no setting keeps every dev set's answerable F1 within the allowed cost")
        return 1
    lines = report(rows, results)
    for name, figures in lines.items():
        print(f"{name}: " + "; ".join(f"{k} {v}" for k, v in figures.items()))
    chosen = max(results, key=lambda name: results[name]["key"])
    for name, result in results.items():
        setting = dataclasses.asdict(result["weights"]) if "weights" in result else {
            "threshold": result["threshold"], "min_coverage": result["min_coverage"],
            "max_unmatched_names": result["max_unmatched_names"]}
        print(f"{name}: mean v2 overall {result['key'][0]:.4f}, mean answerable F1 {result['key'][1]:.4f}: {setting}")
    print(f"default reader: {chosen}")
    if not args.dry_run:
        config = saved(json.loads(path.read_text()), results, lines, "measured" if args.measure else "tuned")
        path.write_text(json.dumps(config, indent=2) + "\n")
        if "command" in config:  # a reader trained here: its card shows the new setting
            write_model_card(path.parent, config, config["command"])
        print(f"saved to {path}")
    return 0
