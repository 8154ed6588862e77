"""Finding passages: dense and keyword (BM25) retrieval from the storage backend, fused.

Dense retrieval finds paraphrases; keyword retrieval finds the rare names and numbers
("Kyivstar", "X-59") that a small embedding model blurs. Two fusions:

- convex (the default): w x BM25 / best BM25 + (1 - w) x cosine, then the best few re-ranked
  with the share of the question's rare words (IDF-weighted) that one sentence of the passage
  holds. A passage where one sentence says most of what the question asks beats one that spreads
  the same words over a paragraph, which is where a short answer sits.
- rrf: reciprocal rank fusion, which needs no score calibration, only ranks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import difflib
from dataclasses import dataclass
import math
import os
import threading
from typing import Sequence

import numpy as np

from .errors import BadInput
from .records import Filters, Passage
from .backends.base import StoreBackend
from .text import keyword_terms, split_sentences, term_stem, words

# Convex fusion re-ranks this many of its best candidates by sentence support (measured on the
# SQuAD dev part: 10, 20 and all 100 rank alike; 20 costs a couple of milliseconds).
RERANK_DEPTH = 20

# A question's rarest words always go to keyword search, however many chunks hold them.
KEEP_RAREST = 2

# A question's name is held by a passage word this alike (difflib's ratio, 1 = the same), so a
# letter or two misspelt or transliterated otherwise does not count as missing. Chosen before
# measuring, not tuned: 0.8 lets "Setanta" match "Sentanta" and "Norse" match "Nors".
NAME_SPELLING = 0.8


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _background() -> ThreadPoolExecutor:
    """The threads that run dense searches beside keyword searches (one per core)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="qa-dense")
        return _POOL


@dataclass(frozen=True)
class RetrievalConfig:
    candidates: int = 50
    rrf_k: int = 60
    fusion: str = "rrf"  # or "convex"
    keyword_weight: float = 0.3
    sentence_weight: float = 0.3
    # Keyword search leaves out a question's words held by more chunks than this (0: none left
    # out): FTS5 scores every chunk that holds any query word, and at a million chunks the
    # common words' chunks made BM25 the slowest part of a search (bench/keywords.py).
    common_term_chunks: int = 0


class Retriever:
    def __init__(self, store: StoreBackend, encoder, config: RetrievalConfig = RetrievalConfig()):
        self.store = store
        self.encoder = encoder
        self.config = config

    def retrieve(self, query: str, n: int, filters: Filters | None = None) -> list[Passage]:
        """The `n` best passages for `query`, best first, from the articles `filters` keep."""
        return self.retrieve_many([query], n, filters)[0]

    def retrieve_many(self, queries: Sequence[str], n: int, filters: Filters | None = None) -> list[list[Passage]]:
        """The batch call behind `retrieve`: one encoder and one dense search for all queries.

        Filters restrict both searches themselves (in the backend: FAISS to the allowed chunk
        ids and FTS5 joined with the articles, or a Milvus filter expression), so a filter that
        keeps few articles still gets `n` passages when they hold that many. The caller holds
        `store.reading()` so every query sees the same generation.
        """
        depth = max(self.config.candidates, n)
        if self.config.fusion.startswith("hybrid-"):
            return self._passages(self._hybrid(queries, self._encode(queries), n, depth, filters), n, queries, rerank=False)
        dense_search = self.store.detached_dense_search(depth, filters)
        if dense_search is None:
            vectors = self._encode(queries)
            dense_lists = self.store.dense_chunks(vectors, depth, filters)
            keyword_lists = [self.store.keyword_chunks(self.searchable_terms(q), depth, filters) for q in queries]
        else:
            # The query's encoding and the dense search (ONNX Runtime and FAISS, which release the
            # GIL) run on another thread while this one searches keywords in SQLite, on its own
            # snapshot: on two cores a search takes the longer of the two, not their sum.
            def dense() -> tuple[np.ndarray, list]:
                vectors = self._encode(queries)
                return vectors, dense_search(vectors)
            running = _background().submit(dense)
            keyword_lists = [self.store.keyword_chunks(self.searchable_terms(q), depth, filters) for q in queries]
            vectors, dense_lists = running.result()
        rerank = self.config.fusion == "convex" and self.config.sentence_weight > 0
        if self.config.fusion == "convex":
            depth = max(n, RERANK_DEPTH) if rerank else n
            fused_lists = [self._blend(v, dense, keyword, depth) for v, dense, keyword in zip(vectors, dense_lists, keyword_lists)]
        else:
            fused_lists = [self._fuse(dense, keyword, n) for dense, keyword in zip(dense_lists, keyword_lists)]
        return self._passages(fused_lists, n, queries, rerank)

    def _encode(self, queries: Sequence[str]) -> np.ndarray:
        if len(queries) == 1 and hasattr(self.encoder, "encode_query"):
            return self.encoder.encode_query(queries[0])[None, :]
        return self.encoder.encode(list(queries))

    def _passages(self, fused_lists, n: int, queries: Sequence[str], rerank: bool) -> list[list[Passage]]:
        """Passages of the fused (chunk id, score, dense rank, keyword rank, cosine) lists."""
        chunks = self.store.chunks(sorted({cid for fused in fused_lists for cid, *_ in fused}))
        if rerank:
            fused_lists = [self._rerank(q, fused, chunks, n) for q, fused in zip(queries, fused_lists)]
        fields = self.store.article_fields(c.article_id for c in chunks.values())
        results = []
        for fused in fused_lists:
            passages = []
            for chunk_id, score, dense_rank, keyword_rank, cosine in fused:
                chunk = chunks.get(chunk_id)
                if chunk is None or chunk.article_id not in fields:  # deleted by a writer meanwhile
                    continue
                title, published, source, url = fields[chunk.article_id]
                passages.append(
                    Passage(chunk.article_id, title, chunk.start, chunk.end, chunk.text,
                            score, dense_rank, keyword_rank, cosine, published, source, url)
                )
            results.append(passages)
        return results

    def searchable_terms(self, query: str) -> list[str]:
        """The query's words that keyword search looks for: all of them, except those held by
        more than `common_term_chunks` chunks, though never its `KEEP_RAREST` rarest. Such a
        word weighs little in BM25 (a low inverse document frequency) and costs the most."""
        terms = [t for t in dict.fromkeys(keyword_terms(query)) if t]
        limit = self.config.common_term_chunks
        if limit <= 0 or len(terms) <= KEEP_RAREST:
            return terms
        frequencies, total = self.store.document_frequencies(terms)  # cached per generation
        if total <= limit:
            return terms
        rarest = set(sorted(terms, key=lambda t: frequencies.get(t, 0))[:KEEP_RAREST])
        return [t for t in terms if frequencies.get(t, 0) <= limit or t in rarest]

    def _rerank(self, query: str, fused, chunks, n: int):
        """Add sentence_weight x sentence support to the fused scores, and keep the best `n`."""
        w = self.config.sentence_weight
        texts = {cid: chunks[cid].text for cid, *_ in fused if cid in chunks}
        support = self.sentence_support(query, texts)
        rescored = [(cid, score + w * support.get(cid, 0.0), *rest) for cid, score, *rest in fused]
        rescored.sort(key=lambda item: -item[1])
        return rescored[:n]

    def sentence_support(self, query: str, texts: dict[int, str]) -> dict[int, float]:
        """For each text, the most any one of its sentences holds of the query's terms, as a
        share of their total inverse document frequency (0..1)."""
        weights = self.term_weights(query)
        whole = sum(weights.values())
        if whole <= 0:
            return {}
        support = {}
        for cid, text in texts.items():
            best = 0.0
            for s, e in split_sentences(text):
                stems = {term_stem(t) for t in keyword_terms(text[s:e])}
                best = max(best, sum(weights[stem] for stem in stems if stem in weights))
            support[cid] = best / whole
        return support

    def term_weights(self, query: str) -> dict[str, float]:
        """The query's terms (stemmed) with their inverse document frequency in the index: a
        word no article holds weighs most."""
        terms = keyword_terms(query)
        frequencies, total = self.store.document_frequencies(terms)
        weights: dict[str, float] = {}
        for term in terms:
            stem = term_stem(term)
            weights[stem] = max(weights.get(stem, 0.0), math.log((total + 1) / (frequencies.get(term, 0) + 0.5)))
        return weights

    def coverage(self, query: str, passages: Sequence[Passage]) -> float:
        """The share of the query's rare words, by inverse document frequency, that the passages
        hold anywhere (0..1; 1 when the query has no searchable word).

        Passages found for a question the articles do not answer ("What is the capital of
        France?") share few of its rare words, whatever their cosine: the reader's no-answer
        decision uses it beside the span model's own.
        """
        weights = self.term_weights(query)
        whole = sum(weights.values())
        if whole <= 0:
            return 1.0
        held = {term_stem(t) for p in passages for t in keyword_terms(p.text)}
        return sum(w for stem, w in weights.items() if stem in held) / whole

    @staticmethod
    def unmatched_names(query: str, passages: Sequence[Passage]) -> int:
        """How many of the query's names no passage (nor its article's title) holds.

        A name is a capitalised word after the query's first: "Which air defence system did
        Poland send?" over passages that never say "Poland" is about something they do not
        report, however well its other words match. Coverage weighs such a word like any rare
        word; this counts it alone. A name spelt a letter or two off ("Zelenskiy", "Setanta")
        still counts as held: people misspell names, and news spells them several ways.
        """
        held = {term_stem(t) for p in passages for t in keyword_terms(f"{p.title}\n{p.text}")}
        names = {term_stem(t) for s, e in words(query)[1:] if query[s].isupper() for t in keyword_terms(query[s:e])}
        return sum(1 for name in names - held if not difflib.get_close_matches(name, held, 1, NAME_SPELLING))

    def _hybrid(self, queries: Sequence[str], vectors: np.ndarray, n: int, depth: int, filters: Filters | None):
        """Milvus's hybrid search in place of our fusion (QA_FUSION=hybrid-rrf or hybrid-weighted)."""
        hybrid = getattr(self.store, "hybrid_chunks", None)
        if hybrid is None:
            raise BadInput("bad_setting", f"QA_FUSION={self.config.fusion} is Milvus's own hybrid search: it needs QA_BACKEND=milvus")
        lists = hybrid(vectors, [keyword_terms(q) for q in queries], n, filters, self.config.fusion,
                       self.config.keyword_weight, depth, self.config.rrf_k)
        fused = []
        for vector, hits in zip(vectors, lists):
            cosine = self.store.cosines(vector, [cid for cid, _ in hits])
            fused.append([(cid, score, rank, None, cosine.get(cid)) for rank, (cid, score) in enumerate(hits)])
        return fused

    def _fuse(self, dense: list[tuple[int, float]], keyword: list[tuple[int, float]], n: int):
        k = self.config.rrf_k
        scores: dict[int, float] = {}
        dense_rank = {cid: rank for rank, (cid, _) in enumerate(dense)}
        keyword_rank = {cid: rank for rank, (cid, _) in enumerate(keyword)}
        cosine = dict(dense)
        for ranking in (dense_rank, keyword_rank):
            for cid, rank in ranking.items():
                scores[cid] = scores.get(cid, 0.0) + 1.0 / (k + rank + 1)
        best = sorted(scores, key=lambda cid: -scores[cid])[:n]
        return [(cid, scores[cid], dense_rank.get(cid), keyword_rank.get(cid), cosine.get(cid)) for cid in best]


    def _blend(self, vector: np.ndarray, dense, keyword, n: int):
        """Convex fusion: w x BM25 / best BM25 + (1 - w) x cosine.

        Unlike ranks, scores keep how far ahead a clear keyword winner is. A keyword-only
        candidate gets its real cosine from the stored vector, not a zero.
        """
        w = self.config.keyword_weight
        cosine = dict(dense)
        cosine.update(self.store.cosines(vector, [cid for cid, _ in keyword if cid not in cosine]))
        best = max((s for _, s in keyword), default=0.0) or 1.0
        bm25 = {cid: s / best for cid, s in keyword}
        scores = {cid: w * bm25.get(cid, 0.0) + (1 - w) * cosine.get(cid, 0.0) for cid in set(cosine) | set(bm25)}
        dense_rank = {cid: rank for rank, (cid, _) in enumerate(dense)}
        keyword_rank = {cid: rank for rank, (cid, _) in enumerate(keyword)}
        top = sorted(scores, key=lambda cid: -scores[cid])[:n]
        return [(cid, scores[cid], dense_rank.get(cid), keyword_rank.get(cid), cosine.get(cid)) for cid in top]

