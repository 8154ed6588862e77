"""Does a learned no-answer verifier beat the span model's margin alone? (issue 10, an experiment)

The shipped reader abstains when its best span's margin (span score minus the "no answer" score)
is below a threshold. On SQuAD v2's adversarial unanswerable questions that margin separates
poorly. This fits a logistic regression on more of what the model and the text say:

- the model: margin, span and null scores, softmax mass of the null and of the best start/end,
  start entropy, the gap to the best span elsewhere, span length;
- the text: the share of the question's words in the paragraph and in the answer's sentence, the
  question's names and numbers missing from the paragraph, the share of the span that repeats the
  question.

With `--states`, also on what the model's last layer computes for the best span's window: the
`[CLS]` vector (the one the "no answer" score reads), the mean over the paragraph's tokens, and
the vectors at the span's start and end (4 x 384 more features, with a stronger L2).

It is fitted on a seeded sample of the training questions (`../shared/data/qa-train`'s SQuAD v2
part, seen once by the one-epoch model) and judged on the dev part with gold paragraphs: SQuAD v2
overall F1 at the threshold chosen on the training sample, and at the dev part's own best.

    .venv/bin/python bench/verifier.py --train 3000 [--states] [--reader DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from qa.evaluate import exact_match, f1_score  # noqa: E402
from qa.readers.neural import DEFAULT_READER_PATH, NeuralReader  # noqa: E402
from qa.records import Passage  # noqa: E402
from qa.squad import read_squad  # noqa: E402
from qa.text import STOPWORDS, normalize_word, split_sentences, words  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "data" / "squad" / "dev-v2.0-part.json"
TRAIN = ROOT.parent / "shared" / "data" / "qa-train" / "squad-v2.0-dev-43-articles.json"
MODEL = ["margin", "span", "null", "p_null_max", "p_null_min", "p_best", "start_entropy", "gap"]
TEXT = ["span_words", "question_in_paragraph", "question_in_sentence", "names_missing", "words_missing", "echo"]


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.exp(x - x.max())
    return x / x.sum()


def _content(text: str) -> set[str]:
    return {w for w in (normalize_word(text[s:e]) for s, e in words(text)) if w not in STOPWORDS}


class Features:
    """The reader's best span of a question over its gold paragraph, with the features above
    (and, with `states`, the last layer's vectors of the window with the best span)."""

    def __init__(self, reader_dir: Path | None = None, states: bool = False) -> None:
        self.reader = NeuralReader(reader_dir or DEFAULT_READER_PATH, threads=1)
        self._windows: list = []
        run = self.reader.run_model
        self.states = states
        if states:
            run = self._with_states(reader_dir or DEFAULT_READER_PATH)

        def keep(ids, mask, types):  # the windows' logits, which spans() does not return
            start, end, *hidden = run(ids, mask, types)
            self._windows.append((mask, types, start, end, *hidden))
            return start, end
        self.reader.run_model = keep

    def _with_states(self, reader_dir: Path):
        """A run of the reader's int8 graph that also returns the span head's input."""
        import onnx
        from onnx import TensorProto, helper

        from qa.training.head import _head, graph_session

        model = onnx.load(str(Path(reader_dir) / "model.onnx"))
        hidden = _head(model)[0]
        model.graph.output.append(helper.make_tensor_value_info(hidden, TensorProto.FLOAT, None))
        session = graph_session(model)

        def run(ids, mask, types):
            return session.run(["start_logits", "end_logits", hidden],
                               {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        return run

    def _state_features(self) -> list[float]:
        """The last layer's vectors in the window whose best span has the best margin."""
        best = None
        for mask, types, start, end, hidden in self._windows:
            for row in range(len(mask)):
                ctx = np.flatnonzero((types[row] == 1) & (mask[row] == 1))[:-1]  # the paragraph, not its [SEP]
                if ctx.size == 0:
                    continue
                scores = start[row][ctx][:, None] + end[row][ctx][None, :]
                i, j = np.indices(scores.shape)
                scores = np.where((j >= i) & (j - i < self.reader.max_answer_tokens), scores, -np.inf)
                a, b = divmod(int(np.argmax(scores)), len(ctx))
                margin = float(scores[a, b] - start[row][0] - end[row][0])
                if best is None or margin > best[0]:
                    h = hidden[row]
                    best = (margin, np.concatenate([h[0], h[ctx].mean(0), h[ctx[a]], h[ctx[b]]]))
        return [float(v) for v in best[1]]

    def __call__(self, ex) -> tuple[list[float], str] | None:
        self._windows.clear()
        spans = self.reader.spans(ex.question, [Passage("dev", ex.title, 0, len(ex.context), ex.context, 1.0)])
        if not spans:
            return None
        best = spans[0]
        text = ex.context[best.start:best.end]
        p_null, p_best, entropy = [], [], []
        for mask, _, start, end, *_ in self._windows:
            for row in range(len(mask)):
                n = int(mask[row].sum())
                ps, pe = _softmax(start[row][:n]), _softmax(end[row][:n])
                p_null.append(ps[0] * pe[0])
                p_best.append(ps[1:].max() * pe[1:].max())
                entropy.append(-(ps * np.log(ps + 1e-12)).sum())
        elsewhere = next((s.margin for s in spans[1:] if s.end <= best.start or s.start >= best.end), best.margin - 10)
        question = _content(ex.question)
        sentence = next(((a, b) for a, b in split_sentences(ex.context) if a <= best.start < b), (0, len(ex.context)))
        tokens = [ex.question[s:e] for s, e in words(ex.question)]
        names = {normalize_word(t) for i, t in enumerate(tokens) if (i and t[:1].isupper()) or any(c.isdigit() for c in t)}
        in_context = {normalize_word(ex.context[s:e]) for s, e in words(ex.context)}
        span_words = [normalize_word(text[s:e]) for s, e in words(text)]
        asked = {normalize_word(t) for t in tokens}
        return [
            best.margin, best.logit, best.logit - best.margin, max(p_null), min(p_null), max(p_best),
            float(np.mean(entropy)), best.margin - elsewhere,
            len(span_words), len(question & _content(ex.context)) / max(1, len(question)),
            len(question & _content(ex.context[sentence[0]:sentence[1]])) / max(1, len(question)),
            len(names - in_context), len(question - _content(ex.context)),
            sum(w in asked for w in span_words) / max(1, len(span_words)),
            *(self._state_features() if self.states else []),
        ], text


def rows(features: Features, path: Path, limit: int, seed: int) -> list[dict]:
    examples = list(read_squad(path))
    if limit and len(examples) > limit:
        random.Random(seed).shuffle(examples)
        examples = examples[:limit]
    out, began = [], time.time()
    for number, ex in enumerate(examples, 1):
        found = features(ex)
        if found is None:
            continue
        values, text = found
        f1 = max(f1_score(text, a) for a, _ in ex.answers) if ex.answerable else 0.0
        em = max(exact_match(text, a) for a, _ in ex.answers) if ex.answerable else 0.0
        out.append({"answerable": ex.answerable, "f1": f1, "em": em, "x": [float(v) for v in values]})
        if number % 500 == 0:
            print(f"{path.name}: {number}/{len(examples)} in {time.time() - began:.0f} s", file=sys.stderr, flush=True)
    return out


def overall(data: list[dict], scores, threshold: float) -> float:
    """SQuAD v2 F1: an answer when its score is above the threshold, else an abstention."""
    return sum((r["f1"] if s > threshold else 0.0) if r["answerable"] else float(s <= threshold)
               for r, s in zip(data, scores)) / len(data)


def best_threshold(data: list[dict], scores) -> tuple[float, float]:
    return max((overall(data, scores, t), t) for t in [-1e9, *sorted(set(scores))])


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 3000, rate: float = 0.1,
        penalised: slice = slice(None)):
    """L2-regularised logistic regression on standardised features, by gradient descent; `l2`
    on the columns `penalised`, 1 on the others. The step is `rate`, or less where the features
    would make it diverge: 1 / (the loss's curvature bound, 1/4 of the largest eigenvalue of
    z'z/n, plus the penalty's). The last layer's 1,536 numbers need a step of about 0.01; at 0.1
    their fits oscillated (a review's finding)."""
    mean, scale = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / scale
    penalty = np.ones(z.shape[1])
    penalty[penalised] = l2
    curvature = 0.25 * np.linalg.norm(z, 2) ** 2 / len(y) + penalty.max() / len(y)
    rate = min(rate, 1.0 / curvature)
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        g = 1.0 / (1.0 + np.exp(-(z @ w + b))) - y
        w -= rate * (z.T @ g + penalty * w) / len(y)
        b -= rate * g.mean()
    gradient = np.linalg.norm(np.append((z.T @ g + penalty * w) / len(y), g.mean()))
    print(f"fit: {z.shape[1]} features, step {rate:.4f}, gradient norm at the end {gradient:.2g}", file=sys.stderr)
    return lambda v: ((v - mean) / scale) @ w + b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000, help="training questions sampled to fit the verifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="a JSON file to keep the features in (computed once)")
    parser.add_argument("--states", action="store_true", help="also fit on the last layer's vectors")
    parser.add_argument("--reader", type=Path, help="the reader folder (default: the shipped one)")
    args = parser.parse_args()
    made = {"states": args.states, "reader": str(args.reader or DEFAULT_READER_PATH), "train": args.train, "seed": args.seed}
    if args.cache and Path(args.cache).is_file():
        data = json.loads(Path(args.cache).read_text())
        if data.get("made") != made:
            sys.exit(f"{args.cache} holds features made otherwise ({data.get('made')}), not {made}")
    else:
        features = Features(args.reader, args.states)
        data = {"made": made, "train": rows(features, TRAIN, args.train, args.seed), "dev": rows(features, DEV, 0, args.seed)}
        if args.cache:
            Path(args.cache).write_text(json.dumps(data))
    train, dev = data["train"], data["dev"]
    x_train, x_dev = np.array([r["x"] for r in train]), np.array([r["x"] for r in dev])
    # What the verifier learns: is the span worth giving (an answerable question, F1 above 0.5)?
    y = np.array([float(r["answerable"] and r["f1"] > 0.5) for r in train])
    names = MODEL + TEXT
    report = {"train_questions": len(train), "dev_questions": len(dev)}
    per_question = {}  # each dev question's v2 score at the training sample's threshold
    ways = [("margin alone", [0], 0), ("model scores", list(range(len(MODEL))), 1.0),
            ("model and text", list(range(len(names))), 1.0)]
    states = x_train.shape[1] - len(names)
    if states:  # --states: the vectors' L2 at three strengths (the 14 features keep 1), all judged below
        ways += [(f"model, text and states, L2 {l2:g}", list(range(x_train.shape[1])), l2) for l2 in (10.0, 100.0, 1000.0)]
    for label, columns, l2 in ways:
        if columns == [0]:
            score_train, score_dev = x_train[:, 0], x_dev[:, 0]
        else:
            # The vectors' fits take small steps (see fit): more of them.
            model = fit(x_train[:, columns], y, l2, steps=3000 if len(columns) <= len(names) else 12000,
                        penalised=slice(len(names), None) if states else slice(None))
            score_train, score_dev = model(x_train[:, columns]), model(x_dev[:, columns])
        train_best, threshold = best_threshold(train, list(score_train))
        per_question[label] = np.array([overall([r], [s], threshold) for r, s in zip(dev, score_dev)])
        described = [names[c] for c in columns if c < len(names)]
        if len(columns) > len(names):
            described.append(f"{states} last-layer numbers")
        report[label] = {"features": described, "train_v2_overall": round(train_best, 4),
                         "dev_v2_overall_at_train_threshold": round(overall(dev, list(score_dev), threshold), 4),
                         "dev_v2_overall_at_dev_best": round(best_threshold(dev, list(score_dev))[0], 4)}
    # Paired bootstrap over the dev questions: is the verifier better than the margin alone?
    rng = np.random.default_rng(args.seed)
    picks = rng.integers(0, len(dev), size=(2000, len(dev)))
    for label in [label for label, _, _ in ways[1:]]:
        gain = per_question[label] - per_question["margin alone"]
        low, high = np.percentile(gain[picks].mean(axis=1), [2.5, 97.5])
        report[label]["dev_gain_over_margin_at_train_threshold"] = f"{gain.mean():+.4f} [{low:+.4f}, {high:+.4f}]"
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
