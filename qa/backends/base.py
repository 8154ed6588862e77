"""The storage backend seam: what the engine, the retriever and the maintenance commands need from
an index, whichever engine holds it.

Two backends implement it: `sqlite` (the default: SQLite with FTS5 for articles, chunks and
keywords, FAISS for vectors, in one folder; `qa/store.py`) and `milvus` (Milvus, embedded as
Milvus Lite in a `.db` file or a cluster at `http://host:19530`; `qa/backends/milvus.py`). The
factory (`qa/backends/factory.py`) picks one from the settings.

Every offset a backend returns is the one it was given: chunks are stored with their article's
`start`/`end`, never recomputed.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import IndexMismatch
from ..records import Article, ArticleListing, Chunk, Filters, SourceCount

log = logging.getLogger(__name__)

# (articles, their chunks, one vector per chunk), as a write takes them and `dump` gives them.
Batch = tuple[list[Article], list[Chunk], np.ndarray]


class StoreBackend(abc.ABC):
    """Articles, chunks, dense and keyword retrieval, and atomic-per-article writes of one index.

    Attributes every backend sets: `name` ("sqlite", "milvus"), `manifest` (what the index was
    built with: model, dimension, chunking, keyword index), `stale` (advisory manifest keys that
    differ: the index answers, and `qa rebuild` brings it up to date).
    """

    name: str
    manifest: dict[str, object]
    stale: dict[str, tuple[object, object]]

    # -- state -------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def generation(self) -> int:
        """A number that grows with every committed write (health reports it)."""

    @abc.abstractmethod
    def reading(self) -> contextlib.AbstractContextManager[None]:
        """The view of one request: every read inside it sees the same committed state, as far as
        the backend can promise it (see each backend's module)."""

    def refresh(self) -> None:
        """Take up changes another process made (the next request would anyway)."""
        with self.reading():
            pass

    @abc.abstractmethod
    def counts(self) -> tuple[int, int]:
        """(articles, chunks)."""

    def describe(self) -> dict[str, object]:
        """What `GET /health` says about the backend beyond the counts."""
        return {"backend": self.name}

    # -- articles ----------------------------------------------------------------------------

    @abc.abstractmethod
    def article(self, article_id: str) -> Article | None:
        """The article exactly as ingested, or None."""

    @abc.abstractmethod
    def article_ids(self) -> list[str]:
        """Every article id, sorted."""

    @abc.abstractmethod
    def article_fields(self, article_ids: Iterable[str]) -> dict[str, tuple[str, str | None, str | None, str | None]]:
        """(title, published, source, url) of each given article that exists."""

    @abc.abstractmethod
    def list_articles(self, filters: Filters | None, limit: int, offset: int) -> ArticleListing:
        """Articles newest first (undated last), then by id, with how many chunks each has."""

    @abc.abstractmethod
    def sources(self) -> list[SourceCount]:
        """Every source the articles name, with how many articles each has, by name."""

    # -- chunks and retrieval ----------------------------------------------------------------

    @abc.abstractmethod
    def chunks(self, chunk_ids: Sequence[int]) -> dict[int, Chunk]:
        """The given chunks that exist (a chunk of a replaced or deleted article does not)."""

    @abc.abstractmethod
    def dense_chunks(self, vectors: np.ndarray, n: int, filters: Filters | None = None) -> list[list[tuple[int, float]]]:
        """For each query vector, the `n` most similar chunks as (chunk id, cosine), best first,
        among the chunks of the articles `filters` keep: the filter applies inside the search, so
        a narrow filter still gets its `n` best."""

    def detached_dense_search(self, n: int, filters: Filters | None = None) -> Callable[[np.ndarray], list[list[tuple[int, float]]]] | None:
        """`dense_chunks(vectors, n, filters)` bound to this thread's view, to be run on another
        thread while this one searches keywords; None when the backend cannot (then the retriever
        searches one after the other)."""
        return None

    @abc.abstractmethod
    def keyword_chunks(self, terms: Sequence[str], n: int, filters: Filters | None = None) -> list[tuple[int, float]]:
        """The `n` best chunks by BM25 for any of `terms`, as (chunk id, score; higher is better),
        among the chunks of the articles `filters` keep."""

    @abc.abstractmethod
    def cosines(self, vector: np.ndarray, chunk_ids: Sequence[int]) -> dict[int, float]:
        """The cosine of `vector` with the stored vectors of the given chunks."""

    @abc.abstractmethod
    def document_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks hold each term (as the keyword index analyses it), and how many chunks
        there are: the inverse document frequencies that weight question terms."""

    # -- writes ------------------------------------------------------------------------------

    @abc.abstractmethod
    def write(self, articles: Sequence[Article], chunks: Sequence[Chunk], vectors: np.ndarray,
              delete: Iterable[str] = ()) -> tuple[list[str], list[str], list[str]]:
        """Add or replace `articles` (with their chunks and vectors) and delete `delete`.
        Returns (added, replaced, deleted) article ids."""

    @abc.abstractmethod
    def rebuild(self, remake: Callable[[list[Article]], Batch]) -> int:
        """Replace every chunk and vector (and the manifest): `remake` gets the stored articles and
        returns them re-analysed with their new chunks and vectors. Returns the number of articles."""

    # -- moving and keeping ------------------------------------------------------------------

    @abc.abstractmethod
    def export_rows(self) -> Iterator[dict[str, str]]:
        """Every article as stored, by id: `{"id", "text", "title", "published"?, "source"?,
        "url"?}`, the fields an ingest takes back."""

    @abc.abstractmethod
    def dump(self, batch_articles: int = 200) -> Iterator[Batch]:
        """Every article with its chunks and their stored vectors, a batch at a time, by id: what
        `qa migrate` writes into another backend (no re-reading, no re-embedding)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections (and, for Milvus Lite, the `.db` file)."""


def check_manifest(built: dict[str, object], wanted: dict[str, object], advisory: Iterable[str], where: str) -> dict[str, tuple[object, object]]:
    """Compare what an index was built with against what the settings ask for, as `IndexStore`
    does: a difference in an `advisory` key is logged and returned (the index still answers until
    `qa rebuild`); any other difference is refused with `IndexMismatch`, never mixed."""
    advisory = frozenset(advisory)
    differ = [key for key in sorted(set(built) | set(wanted)) if built.get(key) != wanted.get(key)]
    stale = {key: (built.get(key), wanted.get(key)) for key in differ if key in advisory}
    if stale:
        log.warning("the index in %s was built with %s; it still answers, and `qa rebuild` brings it up to date",
                    where, ", ".join(f"{k} {b!r} (now {n!r})" for k, (b, n) in stale.items()))
    refused = [key for key in differ if key not in advisory]
    if refused:
        differences = ", ".join(f"{key} {built.get(key)!r} (settings ask for {wanted.get(key)!r})" for key in refused)
        raise IndexMismatch("index_mismatch", f"the index in {where} was built with {differences}; "
                            "point the settings at a new index or rebuild it with `qa rebuild`")
    return stale
