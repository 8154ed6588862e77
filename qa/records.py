"""The records that cross stage boundaries.

Every offset is a Python string index (code points) into the article's stored text, end
exclusive, and travels unchanged from the article to the answer: a chunk knows where it sits,
a sentence knows where it sits, and an answer's citation is computed from them, never searched
for again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Article:
    """An article exactly as ingested, with what we learned about it."""

    id: str
    text: str
    title: str = ""
    published: str | None = None
    source: str | None = None
    url: str | None = None
    # Spans of the text that are not the article's own (donation appeals, image captions, links
    # to other stories). They stay in `text` so offsets stay true, but are never indexed or read.
    excluded: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Sentence:
    """One sentence of an article: `article.text[start:end] == text`."""

    article_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Chunk:
    """An indexed window of whole sentences: `article.text[start:end] == text`."""

    article_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with the article's title and the fused retrieval score."""

    article_id: str
    title: str
    start: int
    end: int
    text: str
    score: float
    # Ranks in each retriever (0 = best, None = not returned by it); the reader may use how well
    # retrieval supports a passage when deciding whether the articles answer at all.
    dense_rank: int | None = None
    keyword_rank: int | None = None
    dense_score: float | None = None


@dataclass(frozen=True)
class Citation:
    article_id: str
    title: str
    start: int
    end: int


@dataclass(frozen=True)
class Context:
    """The sentence (or passage) that holds an answer, in the same article."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Answer:
    text: str
    score: float
    citation: Citation
    context: Context


@dataclass(frozen=True)
class Match:
    """Where an article states a given text (citation lookup)."""

    article_id: str
    title: str
    start: int
    end: int
    text: str
    kind: str  # "exact" | "near" | "semantic"
    score: float


@dataclass(frozen=True)
class IngestReport:
    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    chunks: int = 0
    seconds: float = 0.0
