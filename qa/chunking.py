"""Sentence-aware, overlapping chunks sized for the embedding model's input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from .articles import kept_spans
from .records import Article, Chunk, Sentence
from .text import split_sentences, words


# The rule that cuts chunks, recorded in the index: bump it when `_windows` cuts differently, so
# an index built before says so (`qa rebuild` re-cuts it). 2: one-sentence paragraphs are no
# topic break (LINE_FILL).
CHUNKER_VERSION = 2

# A window this full (share of max_tokens) closes where a new topic (paragraph) starts...
PARAGRAPH_FILL = 0.25
# ... and this full at the next line break after a paragraph of one sentence (see `_windows`).
LINE_FILL = 0.35


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 200
    overlap_sentences: int = 1


def sentences(article: Article) -> list[Sentence]:
    """The article's own sentences: excluded text removed, offsets into the article."""
    return [
        Sentence(article.id, s, e, article.text[s:e])
        for s, e in kept_spans(article, split_sentences(article.text))
    ]


def chunk_articles(
    articles: Sequence[Article],
    count_tokens: Callable[[list[str]], list[int]],
    config: ChunkingConfig = ChunkingConfig(),
) -> list[Chunk]:
    """Windows of whole sentences of at most `max_tokens` word pieces each.

    Neighbouring windows share `overlap_sentences` sentences, so an answer near a boundary is
    whole in at least one chunk. A window never reaches across excluded text: a chunk's text is
    a slice of the article, and excluded text must not be embedded or read.
    """
    per_article = [_pieces(article, sentences(article), config.max_tokens) for article in articles]
    texts = [article.text[s:e] for article, pieces in zip(articles, per_article) for s, e in pieces]
    counts = iter(count_tokens(texts))
    chunks: list[Chunk] = []
    for article, pieces in zip(articles, per_article):
        sized = [(s, e, next(counts)) for s, e in pieces]
        for group in _segments(article, sized):
            chunks.extend(_windows(article, group, config))
    return chunks


def _pieces(article: Article, sents: list[Sentence], max_tokens: int) -> list[tuple[int, int]]:
    """Sentences, with any too long for one chunk cut at word boundaries.

    Words are a cheap upper-bound proxy here (a word is at least one word piece), so a sentence of
    more than `max_tokens // 2` words is cut in halves-sized pieces before it is ever counted.
    """
    limit = max(8, max_tokens // 2)
    out = []
    for sentence in sents:
        spans = words(sentence.text)
        if len(spans) <= limit:
            out.append((sentence.start, sentence.end))
            continue
        for i in range(0, len(spans), limit):
            part = spans[i:i + limit]
            out.append((sentence.start + part[0][0], sentence.start + (part[-1][1] if i + limit < len(spans) else len(sentence.text))))
    return out


def _segments(article: Article, sized: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
    """Runs of sentences with no excluded text between them."""
    groups: list[list[tuple[int, int, int]]] = []
    for piece in sized:
        if groups and not any(groups[-1][-1][1] <= xs < piece[0] for xs, _ in article.excluded):
            groups[-1].append(piece)
        else:
            groups.append([piece])
    return groups


def _windows(article: Article, pieces: list[tuple[int, int, int]], config: ChunkingConfig) -> list[Chunk]:
    # A paragraph starts where a line break stands between two sentences.
    breaks = [i == 0 or "\n" in article.text[pieces[i - 1][1]:pieces[i][0]] for i in range(len(pieces))]
    # A paragraph is a topic of its own, but one of a single sentence is not: news runs one
    # sentence to a paragraph, and the next often leaves its subject there ("The hack ..."), so
    # windows run on across such breaks (closing at one once fuller) and keep their overlap.
    opens = [breaks[i] and (i == 0 or not breaks[i - 1]) for i in range(len(pieces))]
    chunks = []
    first = 0
    while first < len(pieces):
        last, tokens = first, pieces[first][2]
        while last + 1 < len(pieces) and tokens + pieces[last + 1][2] <= config.max_tokens:
            # A window this full ends with its topic: one embedding, one topic.
            if opens[last + 1] and tokens >= config.max_tokens * PARAGRAPH_FILL:
                break
            if breaks[last + 1] and tokens >= config.max_tokens * LINE_FILL:
                break
            last += 1
            tokens += pieces[last][2]
        start, end = pieces[first][0], pieces[last][1]
        chunks.append(Chunk(article.id, start, end, article.text[start:end]))
        if last + 1 >= len(pieces):
            break
        # Step forward, keeping the overlap (never across a new topic), by at least one sentence.
        first = last + 1 if opens[last + 1] else max(first + 1, last + 1 - config.overlap_sentences)
    return chunks
