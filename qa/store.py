"""The index on disk: articles and chunks in SQLite (with an FTS5 keyword index), vectors in FAISS.

Layout of `QA_INDEX_DIR`:
- `index.sqlite`: articles, chunks, the FTS5 table, and `meta` (what the index was built with and
  its generation number).
- `vectors-<generation>.faiss`: the vectors of that generation, chunk ids as FAISS ids.
- `write.lock`: held by the one writer.

A change writes the next generation's FAISS file completely, then commits SQLite, which names the
new generation: the commit is the atomic switch. A crash before it leaves the previous generation
whole (the orphan file is removed on the next write); after it, both halves are in place.
Readers in other processes notice the generation change and load the new file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import faiss
import numpy as np

from .errors import Busy, IndexMismatch
from .records import Article, ArticleListing, ArticleSummary, Chunk, Filters, SourceCount

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY, text TEXT NOT NULL, title TEXT NOT NULL, published TEXT, source TEXT,
    url TEXT, excluded TEXT NOT NULL, ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, article_id TEXT NOT NULL, start INTEGER NOT NULL,
    end INTEGER NOT NULL, text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_article ON chunks(article_id);
CREATE INDEX IF NOT EXISTS articles_by_published ON articles(published);
CREATE INDEX IF NOT EXISTS articles_by_source ON articles(source);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, tokenize='porter unicode61 remove_diacritics 2');
"""


class ReadWriteLock:
    """Many readers or one writer, so a search never sees half of a change."""

    def __init__(self):
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            while self._writing:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            while self._writing or self._readers:
                self._condition.wait()
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


class IndexStore:
    """Articles, chunks, keyword index and vectors of one index folder."""

    def __init__(self, directory: Path, manifest: dict[str, object], writer_timeout: float = 30.0,
                 advisory: Iterable[str] = ()):
        """Open (or create) the index at `directory`.

        `manifest` says what the caller will write (model, dimension, chunking); an existing index
        built otherwise is refused with `IndexMismatch`, never mixed. A difference in an
        `advisory` key is only logged and kept in `stale`: chunks cut by an older rule still read
        and search well beside new ones, so the index keeps serving until `qa rebuild`.
        """
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.manifest = {k: manifest[k] for k in sorted(manifest)}
        self.dimension = int(manifest["dimension"])
        self.advisory = frozenset(advisory)
        self.stale: dict[str, tuple[object, object]] = {}  # key -> (built with, settings ask for)
        self.writer_timeout = writer_timeout
        self._path = self.directory / "index.sqlite"
        self._local = threading.local()
        self._lock = ReadWriteLock()
        self._generation = -1
        self._vectors = self._empty_vectors()
        # (generation, chunk count, term -> chunks holding it), for `document_frequencies`.
        self._frequencies: tuple[int, int, dict[str, int]] = (-1, 0, {})
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self._check_manifest()
        self.refresh()

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @property
    def _db(self) -> sqlite3.Connection:
        # One connection per thread: the API serves requests from a thread pool.
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _check_manifest(self) -> None:
        stored = self._meta("manifest")
        if stored is None:
            with self._writer():
                if self._meta("manifest") is None:
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES ('manifest', ?)", (json.dumps(self.manifest),))
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', '0')")
            return
        built = json.loads(stored)
        differ = [key for key in sorted(set(built) | set(self.manifest)) if built.get(key) != self.manifest.get(key)]
        self.stale = {key: (built.get(key), self.manifest.get(key)) for key in differ if key in self.advisory}
        if self.stale:
            log.warning(
                "the index in %s was built with %s; it still answers, and `qa rebuild` brings it up to date",
                self.directory, ", ".join(f"{k} {b!r} (now {n!r})" for k, (b, n) in self.stale.items()),
            )
        refused = [key for key in differ if key not in self.advisory]
        if refused:
            differences = ", ".join(
                f"{key} {built.get(key)!r} (settings ask for {self.manifest.get(key)!r})" for key in refused
            )
            raise IndexMismatch(
                "index_mismatch",
                f"the index in {self.directory} was built with {differences}; "
                "point QA_INDEX_DIR at a new folder or rebuild it with `qa rebuild`",
            )

    # -- generations -------------------------------------------------------------------------

    def _empty_vectors(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    def _vectors_path(self, generation: int) -> Path:
        return self.directory / f"vectors-{generation}.faiss"

    @property
    def generation(self) -> int:
        return int(self._meta("generation") or 0)

    def refresh(self) -> None:
        """Load the newest generation if another process (or a restart) changed the index."""
        generation = self.generation
        if generation == self._generation:
            return
        with self._lock.writing():
            for _ in range(5):
                generation = self.generation
                if generation == self._generation:
                    return
                path = self._vectors_path(generation)
                try:
                    vectors = faiss.read_index(str(path)) if generation else self._empty_vectors()
                except RuntimeError:
                    # The writer replaced it between our two looks; read the generation again.
                    time.sleep(0.05)
                    continue
                self._vectors, self._generation = vectors, generation
                log.info("index generation %d: %d vectors", generation, vectors.ntotal)
                return
            raise Busy("busy", "the index changed while it was being read; try again")

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        """The one writer across processes: an exclusive lock on `write.lock`."""
        with open(self.directory / "write.lock", "a+") as handle:
            deadline = time.monotonic() + self.writer_timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Busy("busy", "another process is writing to the index; try again") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- writes ------------------------------------------------------------------------------

    def write(
        self,
        articles: Sequence[Article],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        delete: Iterable[str] = (),
    ) -> tuple[list[str], list[str], list[str]]:
        """Add or replace `articles` (with their chunks and vectors) and delete `delete`, atomically.

        Returns (added, replaced, deleted) article ids.
        """
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        with self._writer():
            self.refresh()
            db = self._db
            ids = [a.id for a in articles]
            wanted_gone = [i for i in delete if i not in ids]
            present = {
                row[0]
                for row in db.execute(
                    f"SELECT id FROM articles WHERE id IN ({','.join('?' * len(ids + wanted_gone))})",
                    ids + wanted_gone,
                )
            } if ids or wanted_gone else set()
            stale_ids = [
                row[0]
                for row in db.execute(
                    f"SELECT id FROM chunks WHERE article_id IN ({','.join('?' * len(present))})", list(present)
                )
            ] if present else []
            try:
                db.execute("BEGIN IMMEDIATE")
                if present:
                    marks = ",".join("?" * len(present))
                    db.execute(f"DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE article_id IN ({marks}))", list(present))
                    db.execute(f"DELETE FROM chunks WHERE article_id IN ({marks})", list(present))
                    db.execute(f"DELETE FROM articles WHERE id IN ({marks})", list(present))
                now = time.time()
                db.executemany(
                    "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(a.id, a.text, a.title, a.published, a.source, a.url, json.dumps(a.excluded), now) for a in articles],
                )
                new_ids = []
                for chunk in chunks:
                    cursor = db.execute(
                        "INSERT INTO chunks (article_id, start, end, text) VALUES (?, ?, ?, ?)",
                        (chunk.article_id, chunk.start, chunk.end, chunk.text),
                    )
                    new_ids.append(cursor.lastrowid)
                db.executemany("INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)", [(i, c.text) for i, c in zip(new_ids, chunks)])
                # The next generation's vectors, written whole before the commit names them.
                updated = faiss.clone_index(self._vectors)
                if stale_ids:
                    updated.remove_ids(np.asarray(stale_ids, dtype=np.int64))
                if new_ids:
                    updated.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(new_ids, dtype=np.int64))
                generation = self._generation + 1
                self._save_vectors(updated, generation)
                db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            with self._lock.writing():
                self._vectors, self._generation = updated, generation
            self._remove_other_generations(generation)
        added = [i for i in ids if i not in present]
        replaced = [i for i in ids if i in present]
        deleted = [i for i in wanted_gone if i in present]
        return added, replaced, deleted

    def _save_vectors(self, vectors: faiss.Index, generation: int) -> None:
        path = self._vectors_path(generation)
        temporary = path.with_suffix(".tmp")
        faiss.write_index(vectors, str(temporary))
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def _remove_other_generations(self, keep: int) -> None:
        for path in self.directory.glob("vectors-*"):
            if path.name != self._vectors_path(keep).name:
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- reads -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """A consistent view for one request: vectors and rows of the same generation."""
        self.refresh()
        with self._lock.reading():
            yield

    def counts(self) -> tuple[int, int]:
        articles = self._db.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
        chunks = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return articles, chunks

    def article(self, article_id: str) -> Article | None:
        row = self._db.execute(
            "SELECT id, text, title, published, source, url, excluded FROM articles WHERE id = ?", (article_id,)
        ).fetchone()
        if row is None:
            return None
        return Article(*row[:6], excluded=tuple(tuple(span) for span in json.loads(row[6])))

    def article_ids(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT id FROM articles ORDER BY id")]

    def article_fields(self, article_ids: Iterable[str]) -> dict[str, tuple[str, str | None, str | None, str | None]]:
        """(title, published, source, url) of each given article that exists."""
        ids = list(set(article_ids))
        if not ids:
            return {}
        rows = self._db.execute(
            "SELECT id, title, published, source, url FROM articles WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        )
        return {row[0]: tuple(row[1:]) for row in rows}

    def allowed_chunks(self, filters: Filters | None) -> np.ndarray | None:
        """The ids of the chunks of the articles `filters` keep; None when they keep everything."""
        if filters is None or not filters.active:
            return None
        where, params = _filter_sql(filters, "a")
        rows = self._db.execute(f"SELECT c.id FROM chunks c JOIN articles a ON a.id = c.article_id WHERE {where}", params)
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def list_articles(self, filters: Filters | None, limit: int, offset: int) -> ArticleListing:
        """Articles newest first (undated last), then by id, with how many chunks each has."""
        where, params = _filter_sql(filters or Filters(), "a")
        total = self._db.execute(f"SELECT COUNT(*) FROM articles a WHERE {where}", params).fetchone()[0]
        rows = self._db.execute(
            f"SELECT a.id, a.title, a.published, a.source, a.url,"
            f" (SELECT COUNT(*) FROM chunks c WHERE c.article_id = a.id)"
            f" FROM articles a WHERE {where}"
            f" ORDER BY a.published IS NULL, a.published DESC, a.id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return ArticleListing(total, tuple(ArticleSummary(*row) for row in rows))

    def sources(self) -> list[SourceCount]:
        """Every source the articles name, with how many articles each has, by name."""
        rows = self._db.execute(
            "SELECT source, COUNT(*) FROM articles WHERE source IS NOT NULL GROUP BY source"
        ).fetchall()
        return [SourceCount(source, count) for source, count in sorted(rows, key=lambda r: (r[0].casefold(), r[0]))]

    def chunks(self, chunk_ids: Sequence[int]) -> dict[int, Chunk]:
        if not chunk_ids:
            return {}
        ids = [int(i) for i in chunk_ids]
        rows = self._db.execute(
            f"SELECT id, article_id, start, end, text FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids
        )
        return {row[0]: Chunk(*row[1:]) for row in rows}

    def closest_chunks(self, vectors: np.ndarray, n: int, allowed: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """For each query vector, the `n` most similar chunks as (chunk id, cosine).

        `allowed` (chunk ids) restricts the search itself, so that a filter keeping few chunks
        still gets its `n` best, not what is left of the `n` best overall.
        """
        available = self._vectors.ntotal if allowed is None else min(len(allowed), self._vectors.ntotal)
        if available == 0:
            return [[] for _ in range(len(vectors))]
        params = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)))
        scores, ids = self._vectors.search(
            np.ascontiguousarray(vectors, dtype=np.float32), min(n, available), params=params
        )
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0] for row_ids, row_scores in zip(ids, scores)]

    def cosines(self, vector: np.ndarray, chunk_ids: Sequence[int]) -> dict[int, float]:
        """Exact cosine of `vector` with given chunks' stored vectors (for keyword-only candidates)."""
        out = {}
        for chunk_id in chunk_ids:
            try:
                out[int(chunk_id)] = float(self._vectors.reconstruct(int(chunk_id)) @ vector)
            except RuntimeError:  # not in this generation's vectors
                continue
        return out

    def document_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks hold each term (as the keyword index stems it), and how many chunks
        there are: the inverse document frequencies that weight question terms.

        Cached per generation: a term costs one FTS5 count (about 1-5 ms at 100k chunks) once.
        """
        generation, total, known = self._frequencies
        if generation != self._generation:
            total = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            known = {}
            self._frequencies = (self._generation, total, known)
        counts = {}
        for term in dict.fromkeys(t for t in terms if t):
            if term not in known:
                if len(known) >= 50_000:  # a bound on memory for a long-running service
                    known.clear()
                known[term] = self._db.execute(
                    "SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", ('"' + term.replace('"', '""') + '"',)
                ).fetchone()[0]
            counts[term] = known[term]
        return counts, total

    def keyword_chunks(self, terms: Sequence[str], n: int, filters: Filters | None = None) -> list[tuple[int, float]]:
        """The `n` best chunks by BM25 for any of `terms`, as (chunk id, BM25 score; higher is better),
        among the chunks of the articles `filters` keep."""
        terms = [t for t in dict.fromkeys(terms) if t]
        if not terms:
            return []
        # Each term quoted: FTS5 then reads "x-59" as the phrase "x 59", and no term is an operator.
        query = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        if filters is None or not filters.active:
            rows = self._db.execute(
                "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?", (query, n)
            )
        else:
            where, params = _filter_sql(filters, "a")
            rows = self._db.execute(
                "SELECT f.rowid, bm25(chunks_fts) FROM chunks_fts f JOIN chunks c ON c.id = f.rowid"
                f" JOIN articles a ON a.id = c.article_id WHERE chunks_fts MATCH ? AND {where}"
                " ORDER BY bm25(chunks_fts) LIMIT ?",
                [query, *params, n],
            )
        return [(int(rowid), -float(score)) for rowid, score in rows]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _filter_sql(filters: Filters, alias: str) -> tuple[str, list[object]]:
    """A WHERE condition on the articles table (as `alias`) that holds for the articles `filters` keep."""
    clauses: list[str] = []
    params: list[object] = []
    # Dates are YYYY-MM-DD, which sort as text as they do as dates; NULL passes no bound.
    if filters.published_from:
        clauses.append(f"{alias}.published >= ?")
        params.append(filters.published_from)
    if filters.published_to:
        clauses.append(f"{alias}.published <= ?")
        params.append(filters.published_to)
    if filters.source is not None:
        clauses.append(f"{alias}.source = ?")
        params.append(filters.source)
    if filters.article_ids:
        # One JSON parameter, not one per id: no limit on how many ids a filter names.
        clauses.append(f"{alias}.id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(filters.article_ids)))
    return " AND ".join(clauses) or "1", params
