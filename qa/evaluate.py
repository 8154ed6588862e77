"""`qa eval`: scoring question sets end to end, with the project's own engine.

- News JSONL (`{"question", "answers", "article"}`): the articles of `QA_CORPUS_DIR`.
- SQuAD JSON (v1.1 or v2.0): each SQuAD article (its paragraphs joined) is ingested into a
  temporary index, so gold answers keep exact offsets in it.
- Citation JSONL (`{"text", "kind", "article", "span"}`): citation lookup over `QA_CORPUS_DIR`.

Answers are scored with SQuAD's normalisation (lower case, no punctuation, no articles).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import re
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .articles import analyse, jsonl_lines
from .engine import Engine
from .errors import BadInput
from .records import Article, Passage
from .settings import Settings
from .squad import read_squad, squad_articles

RECALL_MAX_CHARS = 1500  # a passage longer than this counts as a miss for search recall


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    answers: tuple[str, ...]  # empty: not answerable from the articles
    article_id: str | None
    spans: tuple[tuple[int, int], ...] = ()  # gold answer offsets in the article, where known
    paragraph: tuple[int, int] | None = None  # SQuAD: the question's paragraph in the article


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, gold: str) -> float:
    predicted, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not truth:  # SQuAD v2: an empty answer is right only for an empty gold
        return float(predicted == truth)
    common = collections.Counter(predicted) & collections.Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def load_squad(path: Path) -> tuple[list[Article], list[Question]]:
    """A SQuAD file as articles (each one's paragraphs joined by a blank line, so gold answers
    keep exact offsets in it) and their questions."""
    articles, starts = [], []
    for number, (title, paragraphs) in enumerate(squad_articles(path)):
        article_id = re.sub(r"[^\w.\-]", "_", title or f"article_{number}")[:200]
        offsets, offset = [], 0
        for context in paragraphs:
            offsets.append(offset)
            offset += len(context) + 2
        starts.append(offsets)
        articles.append(Article(id=article_id, text="\n\n".join(paragraphs), title=(title or article_id).replace("_", " ")))
    questions = []
    for example in read_squad(path):
        article = articles[example.article]
        offset = starts[example.article][example.paragraph]
        questions.append(Question(
            example.id, example.question, tuple(text for text, _ in example.answers), article.id,
            tuple((offset + start, offset + start + len(text)) for text, start in example.answers),
            (offset, offset + len(example.context)),
        ))
    return articles, questions


def json_lines(path: Path) -> list:
    """The JSON values of a JSONL file, a line each (as `qa.articles.jsonl_lines` cuts them)."""
    text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
    return [json.loads(line) for _, line in jsonl_lines(text)]


def load_news(path: Path) -> list[Question]:
    questions = []
    for item in json_lines(path):
        article = item.get("article")
        if not isinstance(item["question"], str):
            raise TypeError(f"question {len(questions) + 1} is not a text")
        questions.append(
            Question(item.get("id", str(len(questions))), item["question"], tuple(item.get("answers") or ()),
                     Path(article).stem if article else None)
        )
    return questions


@contextlib.contextmanager
def dev_engine(path: Path, settings: Settings, **engine_args) -> Iterator[Engine]:
    """An engine over a throwaway index of a dev set's articles: a SQuAD file's own, or
    `QA_CORPUS_DIR` for a JSONL file (news questions, citations). On milvus the index is a Lite
    file in the same temporary folder, never the configured server. `engine_args` go to Engine
    (an encoder or reader already loaded)."""
    with tempfile.TemporaryDirectory(prefix="qa-eval-") as directory:
        engine = Engine(dataclasses.replace(settings, index_dir=Path(directory), milvus_uri=""), **engine_args)
        try:
            if path.suffix == ".json":
                engine.ingest([analyse(a) for a in load_squad(path)[0]])
            else:
                engine.ingest_paths([settings.corpus_dir])
            yield engine
        finally:
            engine.close()


def dev_questions(path: Path) -> list[Question]:
    """A dev set's questions: a SQuAD file's, or a news JSONL file's."""
    return load_squad(path)[1] if path.suffix == ".json" else load_news(path)


def evaluate_file(path: str | Path, settings: Settings, limit: int | None = None, reader: str | None = None,
                  gold_passages: bool = False, search_only: bool = False) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BadInput("not_found", f"{path}: no such file")
    if limit is not None and limit < 1:
        raise BadInput("bad_limit", f"--limit {limit}: give at least 1 question")
    questions, citations = read_set(path, limit)
    if reader:
        settings = dataclasses.replace(settings, reader=reader)
    with dev_engine(path, settings) as engine:
        if citations is not None:
            from .citescore import score_citations

            return score_citations(engine.citation_finder, citations)
        report = score_search(engine, questions) if search_only else score_questions(engine, questions, gold_passages)
        return {"file": str(path), "reader": engine.reader.name, **report}


def read_set(path: Path, limit: int | None) -> tuple[list[Question], list[dict] | None]:
    """The first `limit` questions of a dev set file, or its citation items (JSONL objects with a
    "kind"), read before any index is built: a file that is neither is refused in one line."""
    try:
        if path.suffix != ".json":
            items = json_lines(path)
            if not items:
                raise BadInput("bad_file", f"{path}: holds no questions")
            if isinstance(items[0], dict) and "kind" in items[0]:
                for item in items:
                    if not isinstance(item.get("kind"), str) or not isinstance(item.get("text"), str):
                        raise KeyError("a citation item needs a kind and a text")
                return [], items[:limit]
        questions = dev_questions(path)[:limit]
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSON and UTF-8 errors are ValueErrors
        raise BadInput("bad_file", f"{path}: not a question set that qa eval reads "
                       f"({type(error).__name__}: {str(error)[:200]})") from None
    if not questions:
        raise BadInput("bad_file", f"{path}: holds no questions")
    return questions, None


def score_search(engine: Engine, questions: list[Question]) -> dict:
    """Search recall alone (no reader): the share of answerable questions whose best 1 and best 5
    passages hold an answer, as `score_questions` counts it, and the search latency."""
    recall = {1: [], 5: []}
    latencies = []
    answerable = [q for q in questions if q.answers]
    for question in answerable:
        began = time.perf_counter()
        passages = engine.search(question.text, 5)
        latencies.append(time.perf_counter() - began)
        for k in recall:
            recall[k].append(any(_holds_answer(p, question) for p in passages[:k]))
    return {
        "questions": len(questions),
        "answerable": len(answerable),
        "search_top1_recall": _mean(recall[1]),
        "search_top5_recall": _mean(recall[5]),
        "search_p50_ms": _percentile(latencies, 50),
        "search_p95_ms": _percentile(latencies, 95),
    }


def score_questions(engine: Engine, questions: list[Question], gold_passages: bool = False) -> dict:
    ems, f1s, v2, cited, exact_offsets = [], [], [], [], []
    recall = {1: [], 5: []}
    latencies, search_latencies = [], []
    abstained_unanswerable = answered_unanswerable = abstained_answerable = 0
    answerable = [q for q in questions if q.answers]
    for question in questions:
        if gold_passages:
            article = engine.article(question.article_id)
            began = time.perf_counter()
            answers = engine.reader.read(question.text, _own_paragraph(article, question), 1)
        else:
            began = time.perf_counter()
            answers = engine.ask(question.text, 1)
        latencies.append(time.perf_counter() - began)
        best = answers[0] if answers else None
        for answer in answers:
            article = engine.article(answer.citation.article_id)
            exact_offsets.append(
                article.text[answer.citation.start:answer.citation.end] == answer.text
                and article.text[answer.context.start:answer.context.end] == answer.context.text
            )
        if not question.answers:
            abstained_unanswerable += best is None
            answered_unanswerable += best is not None
            v2.append(float(best is None))
            continue
        if best is None:
            abstained_answerable += 1
            ems.append(0.0), f1s.append(0.0), v2.append(0.0)
        else:
            ems.append(max(exact_match(best.text, g) for g in question.answers))
            f1 = max(f1_score(best.text, g) for g in question.answers)
            f1s.append(f1), v2.append(f1)
            cited.append(_citation_right(best, question))
        if not gold_passages:
            # The question's vector is cached by the ask above; time the search without it.
            getattr(engine.encoder, "forget_queries", lambda: None)()
            began = time.perf_counter()
            passages = engine.search(question.text, 5)
            search_latencies.append(time.perf_counter() - began)
            for k in recall:
                recall[k].append(any(_holds_answer(p, question) for p in passages[:k]))
    unanswerable = len(questions) - len(answerable)
    report = {
        "questions": len(questions),
        "answerable": len(answerable),
        "exact_match": _mean(ems),
        "f1": _mean(f1s),
        "citation_accuracy": _mean(cited),
        "offsets_exact": f"{sum(exact_offsets)}/{len(exact_offsets)}",
        "answerable_abstained": abstained_answerable,
        "unanswerable": unanswerable,
        "unanswerable_abstained": abstained_unanswerable,
        "abstention_rate": abstained_unanswerable / unanswerable if unanswerable else float("nan"),
        "v2_overall": _mean(v2),
        # 95% bootstrap intervals over the questions
        "f1_interval": _interval(f1s),
        "v2_overall_interval": _interval(v2),
        "ask_p50_ms": _percentile(latencies, 50),
        "ask_p95_ms": _percentile(latencies, 95),
    }
    if not gold_passages:
        report.update({
            "search_top1_recall": _mean(recall[1]),
            "search_top5_recall": _mean(recall[5]),
            "search_p50_ms": _percentile(search_latencies, 50),
            "search_p95_ms": _percentile(search_latencies, 95),
        })
    return report


def _own_paragraph(article: Article, question: Question) -> list[Passage]:
    """The paragraph the question was written on (reading comprehension); for an unanswerable
    SQuAD v2 question too, which must then be recognised as unanswerable from that paragraph."""
    if question.paragraph is None:
        raise BadInput("bad_request", "--gold needs SQuAD questions, which know their paragraph")
    start, end = question.paragraph
    return [Passage(article.id, article.title, start, end, article.text[start:end], 1.0, 0, 0, 1.0)]


def _citation_right(answer, question: Question) -> bool:
    citation = answer.citation
    if citation.article_id != question.article_id:
        return False
    if question.spans:  # SQuAD: the cited span overlaps a gold answer's span
        return any(citation.start < e and s < citation.end for s, e in question.spans)
    return True


def _holds_answer(passage: Passage, question: Question) -> bool:
    if len(passage.text) > RECALL_MAX_CHARS:
        return False
    if question.spans:
        return passage.article_id == question.article_id and any(
            passage.start <= s and e <= passage.end for s, e in question.spans
        )
    text = passage.text.lower()
    return any(answer.lower() in text for answer in question.answers)


def bootstrap_interval(values, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A 95% bootstrap interval of the mean of per-question values (seeded: the same every run).

    A dev set of a few dozen questions moves by luck; the interval says how much."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _interval(values) -> list[float]:
    return [round(v, 4) for v in bootstrap_interval(values)] if len(values) else []


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _percentile(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1000, 1) if seconds else float("nan")
