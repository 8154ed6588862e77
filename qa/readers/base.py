"""The reader interface: from retrieved passages to short answers with exact citations."""

from __future__ import annotations

from typing import Protocol, Sequence

from ..records import Answer, Citation, Context, Passage
from ..text import split_sentences


class Reader(Protocol):
    """Picks answer spans in passages. An empty list means the passages hold no answer."""

    name: str

    def read(self, question: str, passages: Sequence[Passage], top_k: int) -> list[Answer]:
        ...


def answer_in_passage(passage: Passage, start: int, end: int, score: float) -> Answer:
    """The answer at `passage.text[start:end]`, cited in article offsets, with its sentence.

    `start`/`end` are offsets into the passage's text; the passage knows where it sits in the
    article, so the citation is computed, never searched for.
    """
    context_start, context_end = start, end
    for s, e in split_sentences(passage.text):
        if s <= start < e or s < end <= e:
            context_start, context_end = min(context_start, s), max(context_end, e)
    text = passage.text[start:end]
    return Answer(
        text=text,
        score=float(score),
        citation=Citation(passage.article_id, passage.title, passage.start + start, passage.start + end,
                          passage.published, passage.source, passage.url),
        context=Context(
            passage.text[context_start:context_end],
            passage.start + context_start,
            passage.start + context_end,
        ),
    )


def best_distinct(answers: Sequence[Answer], top_k: int) -> list[Answer]:
    """The best `top_k` answers, the same answer from overlapping chunks given once.

    Two answers are the same when they cite overlapping spans of one article, or say the same
    words; the higher-scored one stays.
    """
    kept: list[Answer] = []
    seen_texts: set[str] = set()
    for answer in sorted(answers, key=lambda a: -a.score):
        key = " ".join(answer.text.lower().split())
        if key in seen_texts:
            continue
        c = answer.citation
        if any(
            k.citation.article_id == c.article_id and k.citation.start < c.end and c.start < k.citation.end
            for k in kept
        ):
            continue
        kept.append(answer)
        seen_texts.add(key)
        if len(kept) == top_k:
            break
    return kept
