"""The index on disk: articles and chunks in SQLite (with an FTS5 keyword index), vectors in FAISS.

Layout of `QA_INDEX_DIR`:
- `index.sqlite`: articles, chunks, the FTS5 table, the posting lists of large indexes'
  keyword search (`qa.postings`), and `meta` (what the index was built with, its
  generation number, and the size and SHA-256 of that generation's vector file).
- `vectors-<generation>.faiss`: the vectors of that generation, chunk ids as FAISS ids.
- `write.lock`: held by the one writer.

A change writes the next generation's FAISS file completely (a temporary file, fsynced, renamed),
then commits SQLite, which names the new generation and records the file's checksum: the commit is
the atomic switch. A crash before it leaves the previous generation whole; after it, both halves
are in place. What a crash leaves behind (a temporary file, the file of a generation that was never
committed or is no longer current) is removed on the next open or write. A vector file that does
not match its recorded checksum is refused with `Damaged`, never served.

Every request reads inside one SQLite read transaction (WAL: a snapshot) together with the vectors
of the generation that snapshot names, so it never sees half of a change, whichever process made
it; other processes pick up a new generation on their next request.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, NoReturn, Sequence

import faiss
import numpy as np

from . import postings
from . import vectors as vector_index
from .errors import BadInput, Busy, Damaged, IndexMismatch, NotFound, StorageFailed
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
CREATE TABLE IF NOT EXISTS postings (term TEXT PRIMARY KEY, chunks INTEGER NOT NULL, data BLOB NOT NULL);
"""

# An index created by this version keeps posting lists from its first write (`qa.postings`);
# meta 'postings' holds their totals and how their words were analysed; its absence says an
# older index has none, and lists of another analysis are as good as none (`qa rebuild`).
_NO_POSTINGS = json.dumps({"chunks": 0, "words": 0, "analysis": postings.ANALYSIS})
_START_POSTINGS = f"""
INSERT INTO meta SELECT 'postings', '{_NO_POSTINGS}'
WHERE NOT EXISTS (SELECT 1 FROM chunks) AND NOT EXISTS (SELECT 1 FROM meta WHERE key = 'postings')
"""

# Keyword search: FTS5, posting lists (`qa.postings`), or auto: posting lists from the size at
# which the vectors turn approximate (FTS5 below: the measured and tuned small-index path).
KEYWORD_SEARCHES = ("auto", "fts5", "postings")

# The moments of a write, in order, where `reached` lets a crash test stop it.
WRITE_POINTS = (
    "begin",            # the write transaction is open, nothing changed yet
    "rows",             # articles, chunks and keyword rows written (uncommitted)
    "vectors-half",     # half of the next generation's vector file written
    "vectors-written",  # the temporary vector file complete and fsynced
    "vectors-renamed",  # renamed to vectors-<generation>.faiss, not yet named by SQLite
    "commit",           # the generation and checksum set, just before COMMIT
    "committed",        # after COMMIT, before the old generation's file is removed
    "cleaned",          # the old generation's file removed: the write is over
)

# Manifest keys that older indexes did not record, with what those indexes were built with: an
# index from before the int8 encoder holds float32 sentence-transformers vectors.
_UNRECORDED = {"encoder": "torch-float32"}

# SQLite's primary result codes: a full disk, an I/O error, a damaged file, not a database.
_SQLITE_FULL, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_NOTADB = 13, 10, 11, 26


def reached(point: str) -> None:
    """A moment of a write (one of `WRITE_POINTS`): nothing happens unless a test asks for it.

    QA_TEST_KILL_AT=<point> kills this process there with SIGKILL, as a power cut or the OOM killer
    would (`<point>:TERM` sends SIGTERM, as a service manager stopping it); QA_TEST_FAIL_AT=<point> raises OSError(ENOSPC) there, as a full disk would. They exist
    so that the crash tests reach every moment of a write, not only those a random timer hits.
    """
    kill = os.environ.get("QA_TEST_KILL_AT", "")
    if kill and kill.partition(":")[0] == point:  # "<point>:TERM" sends SIGTERM instead
        os.kill(os.getpid(), signal.SIGTERM if kill.endswith(":TERM") else signal.SIGKILL)
    if os.environ.get("QA_TEST_FAIL_AT") == point:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), point)


def _corrupt(error: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is damaged ("disk image is malformed", "not a database"),
    rather than busy or refused."""
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _fsync_directory(directory: Path) -> None:
    # A rename is durable only once the folder that holds it is synced.
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _storage_failure(error: BaseException, directory: Path) -> StorageFailed | None:
    """The `StorageFailed` for a refused write (full disk, I/O error), or None for other errors."""
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    elif isinstance(error, sqlite3.OperationalError) and (getattr(error, "sqlite_errorcode", 0) & 0xFF) in (_SQLITE_FULL, _SQLITE_IOERR):
        reason = str(error)
        full = (error.sqlite_errorcode & 0xFF) == _SQLITE_FULL
    else:
        return None
    return StorageFailed(
        "insufficient_storage" if full else "write_failed",
        f"could not write the index in {directory} ({reason}); nothing of this change was kept "
        "and the index is as it was",
    )


class IndexStore:
    """Articles, chunks, keyword index and vectors of one index folder."""

    def __init__(self, directory: Path, manifest: dict[str, object], writer_timeout: float = 30.0,
                 advisory: Iterable[str] = (), maintenance: bool = False,
                 vector_config: vector_index.VectorConfig | None = None, keyword_search: str = "auto"):
        """Open (or create) the index at `directory`.

        `manifest` says what the caller will write (model, dimension, chunking); an existing index
        built otherwise is refused with `IndexMismatch`, never mixed. A difference in an
        `advisory` key is only logged and kept in `stale`: chunks cut by an older rule still read
        and search well beside new ones, so the index keeps serving until `qa rebuild`.
        `maintenance` opens it for `rebuild`, `export_rows` and `backup` alone: neither the
        manifest nor the vectors are checked or loaded (a rebuild replaces both; the others
        check what they copy).

        Raises `Damaged` (one line naming the file and what to do) when the database or the
        current vector file is unreadable or does not match its recorded checksum.

        `vector_config` says from what size the vectors are searched approximately (`qa.vectors`);
        `keyword_search` what keyword search reads (`KEYWORD_SEARCHES`).
        """
        if keyword_search not in KEYWORD_SEARCHES:
            raise BadInput("bad_setting", f"QA_KEYWORD_SEARCH={keyword_search!r} is not one of {', '.join(KEYWORD_SEARCHES)}")
        self.keyword_search = keyword_search
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise BadInput("bad_setting", f"the index folder {self.directory} is a file; set QA_INDEX_DIR to a folder")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.manifest = {k: manifest[k] for k in sorted(manifest)}
        self.dimension = int(manifest["dimension"])
        self.advisory = frozenset(advisory)
        self.stale: dict[str, tuple[object, object]] = {}  # key -> (built with, settings ask for)
        self.writer_timeout = writer_timeout
        self.vector_config = vector_config or vector_index.VectorConfig()
        self._path = self.directory / "index.sqlite"
        self._local = threading.local()
        self._load_lock = threading.Lock()
        # (generation, its vectors): the newest generation loaded, one tuple so that a reader
        # never pairs one generation's number with another's vectors.
        self._loaded: tuple[int, faiss.Index] = (0, self._empty_vectors())
        # (generation, the posting lists' totals if keyword search reads them), for `_postings_totals`.
        self._postings_read: tuple[int, dict[str, int] | None] = (-1, None)
        # (generation, chunk count, term -> chunks holding it), for `document_frequencies`.
        self._frequencies: tuple[int, int, dict[str, int]] = (-1, 0, {})
        try:
            with contextlib.closing(self._connect()) as db:
                db.executescript(_SCHEMA)
                if (db.execute("SELECT 1 FROM meta WHERE key = 'postings'").fetchone() is None
                        and db.execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is None):
                    with db:
                        db.execute(_START_POSTINGS)
            if maintenance:
                return
            self._check_manifest()
            self._clean_up()
            self.refresh()
            if keyword_search != "fts5" and self._postings_state() is None:
                log.info("%s has no posting lists of this version: keyword search reads FTS5; "
                         "`qa rebuild` adds them", self.directory)
            _warm_page_cache(self._connect, self._path)
        except sqlite3.DatabaseError as error:
            self.close()
            if _corrupt(error):
                raise self._damaged_database(error) from None
            raise

    @classmethod
    def open_stored(cls, directory: Path) -> "IndexStore":
        """The existing index at `directory`, for maintenance, with the manifest it was built with:
        no model is needed to export or back it up."""
        path = Path(directory) / "index.sqlite"
        if not path.is_file():
            raise NotFound("not_found", f"no index in {directory}")
        try:
            with contextlib.closing(sqlite3.connect(path)) as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
        except sqlite3.DatabaseError as error:
            if not _corrupt(error):
                raise
            raise Damaged("index_damaged", f"the index database {path} is damaged ({error}); restore the index "
                          "from a backup (`qa backup`) or an export (`qa import`)") from None
        if row is None:
            raise NotFound("not_found", f"no index in {directory}")
        return cls(directory, json.loads(row[0]), maintenance=True)

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a write that was acknowledged survives a power cut too, not only a crash.
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _damaged_database(self, error: sqlite3.DatabaseError) -> Damaged:
        return Damaged(
            "index_damaged",
            f"the index database {self._path} is damaged ({error}); restore the index from a backup "
            "(`qa backup`) or an export (`qa import`)",
        )

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
        built = {**_UNRECORDED, **json.loads(stored)}
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

    def _empty_vectors(self) -> faiss.Index:
        return vector_index.empty(self.dimension)

    def _vectors_path(self, generation: int) -> Path:
        return self.directory / f"vectors-{generation}.faiss"

    @property
    def generation(self) -> int:
        return int(self._meta("generation") or 0)

    def refresh(self) -> None:
        """Load the newest generation if another process (or a restart) changed the index."""
        with self.reading():
            pass

    def _snapshot_vectors(self) -> tuple[int, faiss.Index] | None:
        """In an open read transaction: the generation it names and that generation's vectors, or
        None when that generation is older than the one loaded already, or its file is gone (a
        writer moved on): the caller then reads again in a new transaction."""
        generation, loaded = self.generation, self._loaded
        if generation == loaded[0]:
            return loaded
        if generation < loaded[0]:
            return None
        with self._load_lock:
            loaded = self._loaded
            if generation == loaded[0]:
                return loaded
            vectors = self._load_vectors(generation)
            if vectors is None:
                return None
            if generation > loaded[0]:
                self._loaded = (generation, vectors)
                log.info("index generation %d: %d vectors", generation, vectors.ntotal)
            return generation, vectors

    def _load_vectors(self, generation: int) -> faiss.Index | None:
        """The vectors of `generation` as the snapshot in progress names them, checked against
        the size and SHA-256 it records; None if the file is gone because a newer generation
        replaced it."""
        stored = self._meta("manifest")
        if stored is not None:
            built = {**_UNRECORDED, **json.loads(stored)}
            refused = [k for k in self.manifest if k not in self.advisory and built.get(k) != self.manifest[k]]
            if refused:
                # `qa rebuild` with other settings ran while this process was open.
                raise IndexMismatch(
                    "index_mismatch",
                    f"the index in {self.directory} was rebuilt with another {', '.join(refused)}; restart the service",
                )
        if generation == 0:
            return self._empty_vectors()
        path = self._vectors_path(generation)
        record = json.loads(self._meta("vectors") or "null")
        try:
            # Checked, then read, each as a stream: a million chunks' file is about 1 GB, and
            # reading it whole before deserialising held the vectors twice in memory.
            if record is not None and record.get("generation") == generation:
                size, digest = _file_digest(path)
                if size != record["bytes"]:
                    problem = f"{size} bytes where {record['bytes']} were written"
                elif digest != record["sha256"]:
                    problem = "its SHA-256 is not the one recorded when it was written"
                else:
                    problem = None
                if problem:
                    raise Damaged("index_damaged", f"the vector file {path} is damaged ({problem}); "
                                  "run `qa rebuild` to rebuild the index from the stored articles")
            else:
                # Written by a version that kept no checksum; the next write records one.
                log.info("no checksum recorded for %s", path)
            return vector_index.load(path)
        except FileNotFoundError:
            with contextlib.closing(sqlite3.connect(self._path)) as fresh:
                newest = int(fresh.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            if newest != generation:
                return None  # a writer committed a newer generation and removed this one
            raise Damaged("index_damaged", f"the vector file {path} is missing; "
                          "run `qa rebuild` to rebuild the index from the stored articles") from None
        except RuntimeError as error:
            raise Damaged("index_damaged", f"the vector file {path} is unreadable ({str(error).splitlines()[0]}); "
                          "run `qa rebuild` to rebuild the index from the stored articles") from None

    def _install(self, generation: int, vectors: faiss.Index) -> None:
        with self._load_lock:
            if generation > self._loaded[0]:
                self._loaded = (generation, vectors)

    @contextlib.contextmanager
    def _writer(self, wait: bool = True) -> Iterator[bool]:
        """The one writer across processes: an exclusive lock on `write.lock`. Yields False
        (without the lock) when `wait` is False and another process holds it."""
        with open(self.directory / "write.lock", "a+") as handle:
            deadline = time.monotonic() + self.writer_timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        yield False
                        return
                    if time.monotonic() > deadline:
                        raise Busy("busy", "another process is writing to the index; try again") from None
                    time.sleep(0.1)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _clean_up(self) -> None:
        """Remove what a crashed write left: temporary files, and vector files of generations
        that are not the committed one. Skipped while another process writes (its files are
        live); that writer removes them itself when it is done."""
        with self._writer(wait=False) as locked:
            if not locked:
                return
            current = self._vectors_path(self.generation).name
            for path in self.directory.glob("vectors-*"):
                if path.name != current:
                    log.info("removing %s, left by an interrupted write", path.name)
                    with contextlib.suppress(OSError):
                        path.unlink()

    # -- writes ------------------------------------------------------------------------------

    def write(
        self,
        articles: Sequence[Article],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        delete: Iterable[str] = (),
    ) -> tuple[list[str], list[str], list[str]]:
        """Add or replace `articles` (with their chunks and vectors) and delete `delete`, atomically.

        Returns (added, replaced, deleted) article ids. Raises `StorageFailed` when the disk
        refuses the write (full, or an I/O error); the index is then as it was.
        """
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        ids = [a.id for a in articles]
        wanted_gone = [i for i in delete if i not in ids]
        with self._writer():
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                reached("begin")
                generation, current = self._writer_vectors()
                present = {
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM articles WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids + wanted_gone),)
                    )
                }
                stale = db.execute(
                    "SELECT id, text FROM chunks WHERE article_id IN (SELECT value FROM json_each(?)) ORDER BY id",
                    (json.dumps(sorted(present)),),
                ).fetchall()
                stale_ids = [row[0] for row in stale]
                if present:
                    marks = ",".join("?" * len(present))
                    db.execute(f"DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE article_id IN ({marks}))", list(present))
                    db.execute(f"DELETE FROM chunks WHERE article_id IN ({marks})", list(present))
                    db.execute(f"DELETE FROM articles WHERE id IN ({marks})", list(present))
                new_ids = self._insert(articles, chunks)
                self._update_postings(stale, list(zip(new_ids, (c.text for c in chunks))))
                reached("rows")
                # The next generation's vectors (a new index: readers keep the current one),
                # written whole before the commit names them.
                updated = vector_index.changed(current, np.asarray(stale_ids, dtype=np.int64), vectors,
                                               np.asarray(new_ids, dtype=np.int64), self.vector_config)
                self._commit_generation(updated, generation + 1)
            except BaseException as error:
                self._fail_write(db, error)
            self._finish(updated, generation + 1)
        added = [i for i in ids if i not in present]
        replaced = [i for i in ids if i in present]
        deleted = [i for i in wanted_gone if i in present]
        return added, replaced, deleted

    def rebuild(self, remake: Callable[[list[Article]], tuple[Sequence[Article], Sequence[Chunk], np.ndarray]]) -> int:
        """Replace every chunk and vector (and the manifest) in one atomic change: `remake`
        gets the stored articles and returns them re-analysed with their new chunks and vectors.

        Needs only the articles' rows: it works when the vector file is damaged or missing.
        Writers wait (and give up with `Busy`) while it runs; readers go on with the old
        generation until its commit. Returns the number of articles.
        """
        with self._writer():
            db = self._db
            try:
                rows = db.execute(
                    "SELECT id, text, title, published, source, url, excluded, ingested_at FROM articles ORDER BY id"
                ).fetchall()
            except sqlite3.DatabaseError as error:
                if _corrupt(error):
                    raise self._damaged_database(error) from None
                raise
            ingested_at = {row[0]: row[7] for row in rows}
            stored = [Article(*row[:6], excluded=tuple(tuple(span) for span in json.loads(row[6]))) for row in rows]
            articles, chunks, vectors = remake(stored)
            try:
                db.execute("BEGIN IMMEDIATE")
                generation = self.generation
                db.execute("DELETE FROM chunks_fts")
                db.execute("DELETE FROM chunks")
                db.execute("DELETE FROM articles")
                db.execute("DELETE FROM postings")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('postings', ?)", (_NO_POSTINGS,))
                new_ids = self._insert(articles, chunks, ingested_at)
                self._update_postings([], list(zip(new_ids, (c.text for c in chunks))))
                updated = vector_index.changed(self._empty_vectors(), None, vectors,
                                               np.asarray(new_ids, dtype=np.int64), self.vector_config)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('manifest', ?)", (json.dumps(self.manifest),))
                self._commit_generation(updated, generation + 1)
            except BaseException as error:
                self._fail_write(db, error)
            self.stale = {}
            self._finish(updated, generation + 1)
        return len(articles)

    def _writer_vectors(self) -> tuple[int, faiss.Index]:
        """Inside the write transaction: the committed generation and its vectors."""
        generation = self.generation
        with self._load_lock:
            if generation != self._loaded[0]:
                vectors = self._load_vectors(generation)
                if vectors is None:
                    raise Damaged("index_damaged", f"the vector file {self._vectors_path(generation)} is missing; "
                                  "run `qa rebuild` to rebuild the index from the stored articles")
                self._loaded = (generation, vectors)
            return self._loaded

    def _insert(self, articles: Sequence[Article], chunks: Sequence[Chunk],
                ingested_at: dict[str, float] | None = None) -> list[int]:
        """Insert articles, chunks and keyword rows in the open transaction; the new chunk ids."""
        db = self._db
        now = time.time()
        db.executemany(
            "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(a.id, a.text, a.title, a.published, a.source, a.url, json.dumps(a.excluded), (ingested_at or {}).get(a.id, now))
             for a in articles],
        )
        new_ids = []
        for chunk in chunks:
            cursor = db.execute(
                "INSERT INTO chunks (article_id, start, end, text) VALUES (?, ?, ?, ?)",
                (chunk.article_id, chunk.start, chunk.end, chunk.text),
            )
            new_ids.append(cursor.lastrowid)
        db.executemany("INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)", [(i, c.text) for i, c in zip(new_ids, chunks)])
        return new_ids

    def _update_postings(self, removed: Sequence[tuple[int, str]], added: Iterable[tuple[int, str]]) -> None:
        """In the open write transaction: the posting lists without the `removed` chunks and
        with the `added` ones, both as (chunk id, text). Nothing when the index keeps none."""
        db = self._db
        totals = self._postings_state()
        if totals is None:
            return
        gone, gone_chunks, gone_words = postings.postings_of(removed)
        new, new_chunks, new_words = postings.postings_of(added)
        removed_ids = np.asarray(sorted(chunk_id for chunk_id, _ in removed), dtype=np.int64)
        terms = sorted(set(gone) | set(new))
        stored = {}
        for first in range(0, len(terms), 10_000):
            stored.update(db.execute(
                "SELECT term, data FROM postings WHERE term IN (SELECT value FROM json_each(?))",
                (json.dumps(terms[first:first + 10_000]),),
            ))
        kept, emptied = [], []
        for term in terms:
            merged = postings.merge(stored.get(term), removed_ids if term in gone else removed_ids[:0], new.get(term))
            if len(merged):
                kept.append((term, len(merged), merged.tobytes()))
            else:
                emptied.append((term,))
        db.executemany("INSERT OR REPLACE INTO postings VALUES (?, ?, ?)", kept)
        db.executemany("DELETE FROM postings WHERE term = ?", emptied)
        totals = {"chunks": totals["chunks"] - gone_chunks + new_chunks, "words": totals["words"] - gone_words + new_words,
                  "analysis": postings.ANALYSIS}
        db.execute("INSERT OR REPLACE INTO meta VALUES ('postings', ?)", (json.dumps(totals),))

    def add_postings(self, progress: Callable[[int], None] | None = None) -> bool:
        """Build the posting lists of an index that has none of this version's (one made by an
        earlier version) from its stored chunks, in one transaction: a few minutes at a million
        chunks. False when it has them already."""
        with self._writer():
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                if self._postings_state() is not None:
                    self._roll_back(db)
                    return False
                db.execute("DELETE FROM postings")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('postings', ?)", (_NO_POSTINGS,))

                def chunks() -> Iterator[tuple[int, str]]:
                    # Streamed from SQLite: the lists are built 50,000 chunks at a time.
                    for number, row in enumerate(db.execute("SELECT id, text FROM chunks ORDER BY id")):
                        if progress is not None and number % 100_000 == 0:
                            progress(number)
                        yield row
                self._update_postings([], chunks())
                db.execute("COMMIT")
                # Read from now on here (other processes: from their next write or restart).
                self._postings_read = (-1, None)
                self._frequencies = (-1, 0, {})
            except BaseException as error:
                self._fail_write(db, error)
        return True

    def _commit_generation(self, vectors: faiss.Index, generation: int) -> None:
        """Write `generation`'s vector file, then name it (and its checksum) in one COMMIT."""
        record = self._save_vectors(vectors, generation)
        db = self._db
        db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('vectors', ?)", (json.dumps(record),))
        reached("commit")
        db.execute("COMMIT")
        reached("committed")

    def _finish(self, vectors: faiss.Index, generation: int) -> None:
        self._install(generation, vectors)
        self._remove_other_generations(generation)
        reached("cleaned")

    def _fail_write(self, db: sqlite3.Connection, error: BaseException) -> NoReturn:
        """Roll the write back and raise: `StorageFailed` when the disk refused it, else `error`."""
        self._roll_back(db)
        failure = _storage_failure(error, self.directory)
        if failure is not None:
            log.info("%s", failure.message)  # the error itself carries it to the user
            raise failure from error
        raise error

    @staticmethod
    def _roll_back(db: sqlite3.Connection) -> None:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def _save_vectors(self, vectors: faiss.Index, generation: int) -> dict[str, object]:
        """Write the vector file of `generation` durably; its size and SHA-256 for `meta`."""
        data = vector_index.serialize(vectors)
        path = self._vectors_path(generation)
        temporary = path.with_name(path.name + ".tmp")
        try:
            with open(temporary, "wb") as handle:
                view = memoryview(data)
                half = len(view) // 2
                handle.write(view[:half])
                handle.flush()
                reached("vectors-half")
                handle.write(view[half:])
                handle.flush()
                os.fsync(handle.fileno())
            reached("vectors-written")
            os.replace(temporary, path)
            _fsync_directory(self.directory)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        reached("vectors-renamed")
        return {"generation": generation, "file": path.name, "bytes": int(data.nbytes), "sha256": hashlib.sha256(data).hexdigest()}

    def _remove_other_generations(self, keep: int) -> None:
        for path in self.directory.glob("vectors-*"):
            if path.name != self._vectors_path(keep).name:
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- backups -----------------------------------------------------------------------------

    def export_rows(self) -> Iterator[dict[str, str]]:
        """Every article as stored, by id, from one snapshot: `{"id", "text", "title",
        "published"?, "source"?, "url"?}`, the fields an ingest takes back."""
        # A read transaction of its own, not `reading()`: the rows are wanted even when the
        # vector file is damaged.
        db = self._connect()
        try:
            db.execute("BEGIN")
            for row in db.execute("SELECT id, text, title, published, source, url FROM articles ORDER BY id"):
                record = dict(zip(("id", "text", "title", "published", "source", "url"), row))
                yield {key: value for key, value in record.items() if value is not None}
        except sqlite3.DatabaseError as error:
            if _corrupt(error):
                raise self._damaged_database(error) from None
            raise
        finally:
            db.close()

    def backup(self, target: Path) -> tuple[int, int]:
        """A consistent copy of the index in `target` (a new or empty folder), taken while the
        service runs: SQLite's backup API copies one snapshot, then the vector file that snapshot
        names is copied and checked against the checksum it records. The copy appears under its
        name only when complete. Returns (generation, articles)."""
        target = Path(target)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise BadInput("backup_exists", f"{target} exists and is not an empty folder; name a new folder")
        remove_abandoned_partials(target)
        staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for _ in range(20):
                for leftover in staging.iterdir():
                    leftover.unlink()
                copy = sqlite3.connect(staging / "index.sqlite", isolation_level=None)
                try:
                    source = self._connect()
                    try:
                        source.backup(copy)  # all pages in one step: one snapshot
                    finally:
                        source.close()
                    generation = int(copy.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
                    record = json.loads((copy.execute("SELECT value FROM meta WHERE key = 'vectors'").fetchone() or ["null"])[0])
                    articles = copy.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
                    check = copy.execute("PRAGMA integrity_check").fetchone()[0]
                finally:
                    copy.close()
                if check != "ok":
                    raise Damaged("index_damaged", f"the index database {self._path} fails its integrity check ({check}); "
                                  "restore the index from an earlier backup")
                if generation == 0:
                    break
                name = self._vectors_path(generation).name
                try:
                    shutil.copyfile(self.directory / name, staging / name)
                except FileNotFoundError:
                    continue  # a writer committed a newer generation and removed this one: again
                if record is not None and record.get("generation") == generation and (
                        _file_digest(staging / name) != (record["bytes"], record["sha256"])):
                    raise Damaged("index_damaged", f"the vector file {self.directory / name} is damaged; "
                                  "run `qa rebuild`, then take the backup")
                break
            else:
                raise Busy("busy", "the index changed too often to copy; try again")
            for path in staging.iterdir():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
            _fsync_directory(staging)
            if target.exists():
                target.rmdir()
            os.rename(staging, target)
            _fsync_directory(target.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return generation, articles

    # -- reads -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """A consistent view for one request: one SQLite snapshot, and the vectors of the
        generation it names, whatever other threads and processes write meanwhile."""
        if getattr(self._local, "view", None) is not None:  # nested: the outer view holds
            yield
            return
        db = self._db
        for _ in range(50):
            db.execute("BEGIN")  # deferred: the first read below fixes the snapshot
            try:
                view = self._snapshot_vectors()
            except BaseException:
                self._roll_back(db)
                raise
            if view is not None:
                break
            self._roll_back(db)  # a newer generation is committed: read it in a new snapshot
            time.sleep(0.002)
        else:
            raise Busy("busy", "the index changed while it was being read; try again")
        self._local.view = view
        try:
            yield
        except sqlite3.DatabaseError as error:
            if _corrupt(error):
                raise self._damaged_database(error) from None
            raise
        finally:
            self._local.view = None
            self._roll_back(db)

    def _current(self) -> tuple[int, faiss.Index]:
        """The (generation, vectors) of the request in progress on this thread."""
        view = getattr(self._local, "view", None)
        return view if view is not None else self._loaded

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
        return self.vector_search(n, allowed)(vectors)

    def vector_search(self, n: int, allowed: np.ndarray | None = None) -> Callable[[np.ndarray], list[list[tuple[int, float]]]]:
        """`closest_chunks` bound to the vectors of this thread's view: FAISS then needs neither
        SQLite nor the GIL, so the search may run on any thread."""
        _, index = self._current()
        available = index.ntotal if allowed is None else min(len(allowed), index.ntotal)

        def search(vectors: np.ndarray) -> list[list[tuple[int, float]]]:
            if available == 0:
                return [[] for _ in range(len(vectors))]
            scores, ids = vector_index.search(index, vectors, min(n, available), allowed, self.vector_config)
            return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
                    for row_ids, row_scores in zip(ids, scores)]
        return search

    def cosines(self, vector: np.ndarray, chunk_ids: Sequence[int]) -> dict[int, float]:
        """Exact cosine of `vector` with given chunks' stored vectors (for keyword-only candidates)."""
        _, index = self._current()
        out = {}
        for chunk_id in chunk_ids:
            try:
                out[int(chunk_id)] = float(index.reconstruct(int(chunk_id)) @ vector)
            except RuntimeError:  # not in this generation's vectors
                continue
        return out

    def _postings_state(self) -> dict[str, int] | None:
        """The posting lists' totals, or None when the index keeps none of this version's."""
        state = self._meta("postings")
        if state is None:
            return None  # an older index: `qa rebuild` gives it posting lists
        totals = json.loads(state)
        return totals if totals.get("analysis") == postings.ANALYSIS else None

    def _postings_totals(self) -> dict[str, int] | None:
        """In a read: the posting lists' totals when keyword search reads them, else None (FTS5).

        Cached per generation: every write that changes the lists commits a new one."""
        if self.keyword_search == "fts5":
            return None
        current, _ = self._current()
        cached = self._postings_read
        if cached[0] == current:
            return cached[1]
        totals = self._postings_state()
        if totals is not None and self.keyword_search == "auto" and totals["chunks"] < self.vector_config.approximate_from:
            totals = None
        self._postings_read = (current, totals)
        return totals

    def document_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks hold each term (as the keyword index stems it), and how many chunks
        there are: the inverse document frequencies that weight question terms.

        Cached per generation: a term costs one FTS5 count (about 1-5 ms at 100k chunks) once,
        or one lookup of its posting list's length.
        """
        current, _ = self._current()
        generation, total, known = self._frequencies
        if generation != current:
            totals = self._postings_totals()
            if totals is not None:
                total = totals["chunks"]
            else:
                total = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            known = {}
            self._frequencies = (current, total, known)
        counts = {}
        missing = [t for t in dict.fromkeys(t for t in terms if t) if t not in known]
        if missing and self._postings_totals() is not None:
            stems = sorted({postings.index_term(t) for t in missing})
            rows = self._db.execute(
                "SELECT term, chunks FROM postings WHERE term IN (SELECT value FROM json_each(?))", (json.dumps(stems),)
            ).fetchall()
            if len(known) >= 50_000:
                known.clear()
            known.update(postings.frequencies(rows, missing))
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
        totals = self._postings_totals()
        if totals is not None:
            stems = sorted({postings.index_term(t) for t in terms})
            lists = dict(self._db.execute(
                "SELECT term, data FROM postings WHERE term IN (SELECT value FROM json_each(?))", (json.dumps(stems),)
            ))
            allowed = self.allowed_chunks(filters)
            return postings.best_chunks(lists, totals["chunks"], totals["words"], n, allowed)
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


def _warm_page_cache(connect: Callable[[], sqlite3.Connection], path: Path) -> None:
    """Read the chunks and articles once, on a background thread at the lowest priority, so that
    the OS caches their pages: every search reads chunks from all over the database, and at a
    million chunks (3 GB) the first searches after a cold start took 19 ms p50 against 12 with it
    cached. Only when the file fits in a quarter of the free memory.

    Through SQLite, on a connection of its own: a second file descriptor of the database, once
    closed, would drop the process's POSIX locks on it (SQLite's documented hazard), and
    `posix_fadvise(WILLNEED)` did nothing on this machine's disk."""
    try:
        size = path.stat().st_size
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    if size > free // 4:
        return

    def read() -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only
        with contextlib.suppress(sqlite3.Error), contextlib.closing(connect()) as db:
            db.execute("SELECT max(length(text)) FROM chunks").fetchone()
            db.execute("SELECT max(length(title)) FROM articles").fetchone()

    threading.Thread(target=read, name="qa-warm-cache", daemon=True).start()


def _file_digest(path: Path) -> tuple[int, str]:
    """(size, SHA-256) of a file, read in blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def remove_abandoned_partials(target: Path) -> None:
    """Remove `.<name>.partial-<pid>` copies of `target` whose process is gone: a backup or an
    export killed with SIGKILL had no chance to remove its own. A live process's copy stays."""
    for partial in Path(target).parent.glob(f".{Path(target).name}.partial-*"):
        try:
            os.kill(int(partial.name.rsplit("-", 1)[1]), 0)
            continue  # still running: its copy is live
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue  # not ours to judge
        log.info("removing %s, left by a killed backup or export", partial)
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


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
