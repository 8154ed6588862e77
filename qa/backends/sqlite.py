"""The default backend: SQLite (articles, chunks, FTS5 keywords) and FAISS (vectors) in one index
folder, with generations and checksums (`qa/store.py`, which keeps its own name and place: this
module adapts it to the interface of `base.py`)."""

from __future__ import annotations

import json
from typing import Iterator

import numpy as np

from ..records import Article, Chunk, Filters
from ..store import IndexStore
from .base import Batch, StoreBackend


class SQLiteFaissStore(IndexStore, StoreBackend):
    """`IndexStore` behind the backend interface; everything it does, it does unchanged."""

    name = "sqlite"
    keyword_index = "fts5 porter unicode61"

    def dense_chunks(self, vectors: np.ndarray, n: int, filters: Filters | None = None) -> list[list[tuple[int, float]]]:
        # FAISS searches inside the allowed chunk ids (a selector), not the best n overall.
        allowed = self.allowed_chunks(filters)
        if allowed is not None and len(allowed) == 0:
            return [[] for _ in range(len(vectors))]
        return self.closest_chunks(vectors, n, allowed)

    def detached_dense_search(self, n: int, filters: Filters | None = None):
        # The filter's chunk ids and the generation's vectors are read here, on the request's thread.
        allowed = self.allowed_chunks(filters)
        if allowed is not None and len(allowed) == 0:
            return lambda vectors: [[] for _ in range(len(vectors))]
        return self.vector_search(n, allowed)

    def dump(self, batch_articles: int = 200) -> Iterator[Batch]:
        # One read snapshot for the whole dump: the rows and the vectors of the generation it names.
        with self.reading():
            _, index = self._current()
            ids = self.article_ids()
            for first in range(0, len(ids), batch_articles):
                group = ids[first:first + batch_articles]
                rows = self._db.execute(
                    "SELECT id, text, title, published, source, url, excluded FROM articles"
                    " WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id", (json.dumps(group),)
                ).fetchall()
                articles = [Article(*row[:6], excluded=tuple(tuple(span) for span in json.loads(row[6]))) for row in rows]
                chunk_rows = self._db.execute(
                    "SELECT id, article_id, start, end, text FROM chunks"
                    " WHERE article_id IN (SELECT value FROM json_each(?)) ORDER BY article_id, start, id", (json.dumps(group),)
                ).fetchall()
                chunks = [Chunk(*row[1:]) for row in chunk_rows]
                vectors = np.zeros((len(chunk_rows), self.dimension), dtype=np.float32)
                for number, row in enumerate(chunk_rows):
                    vectors[number] = index.reconstruct(int(row[0]))
                yield articles, chunks, vectors
