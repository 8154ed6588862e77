"""The neural reader's spans, judged with the rule reader's sentence ranking.

The span model finds the words a person would underline inside one window, but its margins do
not compare well across passages: a confident span in an off-topic passage can beat the right
one. The rule reader ranks sentences by meaning and shared rare words across all passages, and
knows what form the question asks for. Each candidate span gets

    score = w_span * sigmoid(margin / 4) + w_sentence * support(its sentence)
            + w_form * (1 if the span has the asked-for form)
            + w_counted * (1 if it is a number of what "how many X" counts)
            - w_echo * (share of it that repeats the question)

and the articles answer only when the best sentence support reaches `min_support` and the best
score reaches `threshold`. The weights are tuned on the dev sets (see `qa/models/reader/reader.json`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..records import Answer, Passage
from ..text import STOPWORDS, normalize_word, words
from .base import answer_in_passage, best_distinct
from .neural import SpanReader, trim_span
from .rules import _DATE, _QUANTITY, DATE, PERSON, PLACE, QUANTITY, RuleReader, question_type, support


# Sentences embedded at a time while reading (the encoder runs texts two at a time on two cores).
SENTENCES_PER_ROUND = 4


@dataclass(frozen=True)
class HybridWeights:
    span: float = 1.0
    sentence: float = 1.0
    form: float = 0.3
    counted: float = 0.3
    echo: float = 0.5
    min_support: float = 0.4
    threshold: float = 0.9
    # The engine's gates: the least share of the question's rare words the passages must hold,
    # and the most names of the question they may lack (None: not gated on names).
    min_coverage: float = 0.0
    max_unmatched_names: int | None = None


@dataclass(frozen=True)
class Candidate:
    passage: int
    start: int  # in the passage's text
    end: int
    margin: float
    support: float
    form: float
    counted: float
    echo: float


def has_form(text: str, kind: str) -> bool:
    """Whether a span looks like what the question asks for (a number, a date, a name)."""
    if kind == QUANTITY:
        return bool(_QUANTITY.search(text)) and any(c.isdigit() for c in text) or bool(
            re.search(r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|hundred|thousand|dozen)", text, re.I))
    if kind == DATE:
        return bool(_DATE.search(text))
    if kind in (PERSON, PLACE):
        tokens = text.split()
        return bool(tokens) and all(t[:1].isupper() or t in ("and", "of", "de") for t in tokens) and not any(c.isdigit() for c in text)
    return True


class HybridReader:
    """A span model's candidates, ranked with sentence support and answer-form rules."""

    name = "hybrid"

    def __init__(self, spans: SpanReader, rules: RuleReader, weights: HybridWeights = HybridWeights()):
        self.span_reader = spans
        self.rules = rules
        self.weights = weights

    @property
    def min_coverage(self) -> float:
        return self.weights.min_coverage

    @property
    def max_unmatched_names(self) -> int | None:
        return self.weights.max_unmatched_names

    def candidates(self, question: str, passages: Sequence[Passage], spans=None) -> tuple[list[Candidate], float]:
        """Every candidate span with its features, and the best support of their sentences.

        `spans`: the span model's spans of these passages, when the caller has them already."""
        found = self._unscored(question, passages, spans)
        if found is None:
            return [], 0.0
        candidates, homes, sentences, overlaps = found
        # Only sentences that hold a span are embedded (the costly part of reading).
        needed = sorted({home for home in homes if home is not None})
        values = support(self.rules.sentence_cosines(question, sentences, needed), overlaps)
        out = [dataclasses.replace(c, support=float(values[home])) if home is not None else c
               for c, home in zip(candidates, homes)]
        return out, max((float(values[i]) for i in needed), default=0.0)

    def _unscored(self, question: str, passages: Sequence[Passage], spans=None):
        """The candidates with every feature but sentence support (0 until their sentence is
        embedded), each one's sentence (an index into the passages' sentences, or None), those
        sentences, and their shared rare words with the question; None without candidates."""
        spans = self.span_reader.spans(question, passages) if spans is None else spans
        sentences = self.rules.sentences(passages)
        if not spans or not sentences:
            return None
        kind = question_type(question)
        question_words = {normalize_word(question[s:e]) for s, e in words(question)}
        shaped, seen = [], set()
        for span in spans:
            passage = passages[span.passage]
            start, end = trim_span(passage.text, span.start, span.end)
            start, end = _reshape(passage.text, start, end, kind, question_words)
            key = (passage.article_id, passage.start + start, passage.start + end)
            if end > start and key not in seen:
                seen.add(key)
                shaped.append((span, start, end))
        # A span's sentence, by article position, so a span in any overlapping chunk finds it.
        where = [(s.passage.article_id, s.passage.start + s.start, s.passage.start + s.start + len(s.text)) for s in sentences]

        def sentence_of(passage: Passage, start: int) -> int | None:
            absolute = passage.start + start
            return next((i for i, (a, s, e) in enumerate(where) if a == passage.article_id and s <= absolute < e), None)
        homes = [sentence_of(passages[span.passage], start) for span, start, _ in shaped]
        out = []
        for span, start, end in shaped:
            passage = passages[span.passage]
            text = passage.text[start:end]
            span_words = [normalize_word(text[s:e]) for s, e in words(text)]
            echo = sum(w in question_words for w in span_words) / len(span_words) if span_words else 1.0
            counted = self.rules.counted_noun_fit(passage.text, end, question) if kind == QUANTITY else 0.0
            out.append(Candidate(span.passage, start, end, span.margin, 0.0, float(has_form(text, kind)), counted, echo))
        return out, homes, sentences, self.rules.sentence_overlaps(question, sentences)

    def score(self, candidate: Candidate) -> float:
        w = self.weights
        return (
            w.span / (1.0 + math.exp(-candidate.margin / 4.0))
            + w.sentence * candidate.support
            + w.form * candidate.form
            + w.counted * candidate.counted
            - w.echo * candidate.echo
        )

    def unit_score(self, value: float) -> float:
        """The blend on 0..1 for the API, in the same order: divided by the most it can reach.

        Answers are ranked by this score, so it must not saturate below the weights' top.
        """
        w = self.weights
        top = w.span + max(w.sentence, 0.0) + max(w.form, 0.0) + max(w.counted, 0.0)
        return float(np.clip(value / top, 0.0, 1.0)) if top > 0 else 0.0

    def read(self, question: str, passages: Sequence[Passage], top_k: int) -> list[Answer]:
        """The best `top_k` distinct answers, exactly as if every candidate's sentence were
        embedded, embedding fewer.

        Support is half cosine (0..1) and half shared words, so before its sentence is embedded a
        candidate's score is known to within w.sentence / 2. Sentences are embedded a few at a
        time, those of the candidates that could score highest first, until no candidate left
        could be among the answers: on the news dev questions about half of them (about 25 ms
        less an ask on two AVX2 cores). Exact because a sentence's cosine does not depend on
        which others are embedded with it (the shipped encoder embeds each text alone);
        tests/test_neural_reader.py holds it to `candidates`, which embeds them all.
        """
        found = self._unscored(question, passages)
        if found is None:
            return []
        candidates, homes, sentences, overlaps = found
        w = self.weights
        exact = {i: self.score(c) for i, (c, home) in enumerate(zip(candidates, homes)) if home is None}
        # The most a candidate can score: its sentence's support at a cosine of 0 or of 1, as the
        # sentence weight's sign has it (the unscored candidates carry support 0; a hair added
        # against rounding).
        least, most = (support(np.full(len(sentences), cosine), overlaps) for cosine in (0.0, 1.0))
        upper = {i: self.score(c) + max(w.sentence * most[home], w.sentence * least[home]) + 1e-9
                 for i, (c, home) in enumerate(zip(candidates, homes)) if home is not None}
        pending = sorted(upper, key=lambda i: -upper[i])
        made: dict[int, Answer] = {}

        def embed(batch: list[int]) -> float:
            """Embed these sentences, score their candidates exactly; their best support."""
            nonlocal pending
            values = support(self.rules.sentence_cosines(question, sentences, batch), overlaps)
            for i in pending:
                if homes[i] in batch:
                    exact[i] = self.score(dataclasses.replace(candidates[i], support=float(values[homes[i]])))
            pending = [i for i in pending if homes[i] not in batch]
            return max((float(values[h]) for h in batch), default=0.0)

        if w.min_support > 0 and embed(sorted({homes[i] for i in pending})) < w.min_support:
            return []  # the support gate reads every candidate's sentence
        while True:
            ceiling = upper[pending[0]] if pending else -math.inf
            floor = max(ceiling, w.threshold)
            answers = []
            for i in sorted(i for i, value in exact.items() if value >= floor):
                if i not in made:
                    c = candidates[i]
                    made[i] = answer_in_passage(passages[c.passage], c.start, c.end, self.unit_score(exact[i]))
                answers.append(made[i])
            kept = best_distinct(answers, top_k)
            # Every candidate not yet scored is below the floor, so the answers at or above it are
            # those of the full reading. They are final when the floor is the threshold, or when
            # they are enough and the last of them outranks whatever is left: answers are ranked
            # by unit score, where clipping or division can tie scores that differ.
            if not pending or ceiling < w.threshold or (
                    0 < top_k <= len(kept) and kept[-1].score > self.unit_score(ceiling)):
                return kept
            embed(list(dict.fromkeys(homes[i] for i in pending))[:SENTENCES_PER_ROUND])


def _reshape(text: str, start: int, end: int, kind: str, question_words: set[str]) -> tuple[int, int]:
    """Fit a span to the form asked for: "February" -> "early February", "400" -> "over 400",
    "Kropynmytskyi in central Ukraine" -> "Kropynmytskyi" (a tail that only repeats the question)."""
    pattern = {QUANTITY: _QUANTITY, DATE: _DATE}.get(kind)
    if pattern is not None:
        for match in pattern.finditer(text, max(0, start - 40), min(len(text), end + 40)):
            if match.start() < end and start < match.end() and match.end() - match.start() <= 40:
                start, end = min(start, match.start()), max(end, match.end())
    spans = words(text[start:end])
    # Drop trailing words that are stop words or the question's own ("in central Ukraine").
    keep = len(spans)
    while keep > 1:
        word = normalize_word(text[start + spans[keep - 1][0]:start + spans[keep - 1][1]])
        if word in question_words or word in STOPWORDS:
            keep -= 1
        else:
            break
    if 0 < keep < len(spans):
        end = start + spans[keep - 1][1]
    return start, end


