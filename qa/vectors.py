"""The vectors of one index generation: exact search below a size, approximate above it.

Below `VectorConfig.approximate_from` vectors the index is exact: a flat inner-product scan
(`IndexIDMap2(IndexFlatIP)`). From that size on it is a graph, FAISS HNSW (32 links a node) over
vectors stored in float16 (`IndexHNSWSQ`): a query walks the graph instead of scanning every
vector, and float16 keeps scores within about 1e-3 of the exact cosine at half the memory. Picked
by measurement on real text vectors (`bench/vectors.py`, `docs/measurements.md`): at the same
search time an inverted file (IVF) found far fewer of the exact ten nearest chunks on this corpus,
and its recall fell as the index grew.

FAISS cannot remove a vector from an HNSW graph, so a replaced or deleted chunk's id goes on a
list of removed ids that every search leaves out (its vector stays in the graph until the graph
is rebuilt). The graph is rebuilt from the live vectors when removed ones pass a fifth of it, and
the index returns to exact when it shrinks below half the threshold. Chunk ids are never reused
(SQLite AUTOINCREMENT), so a removed id never comes back.

Indexes are values: `changed` returns a new index and never alters the one given, so readers of the
current generation keep theirs while a writer prepares the next (`qa.store`). Chunk ids are the
FAISS ids of both kinds. `serialize` writes an exact index as FAISS does (files of earlier versions
load unchanged) and a graph with its removed ids after a header.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)

EXACT = "exact"
APPROXIMATE = "hnsw32-fp16"

# A filter that keeps at most this many vectors is searched exactly among them on an approximate
# index (a few milliseconds): a graph walk that must skip most nodes finds few of them.
EXACT_AMONG = 50_000
_HEADER = b"QAHNSW1\n"
_LINKS = 32


@dataclass(frozen=True)
class VectorConfig:
    """When the index turns approximate, and how widely an approximate search looks."""

    approximate_from: int = 100_000  # vectors; exact below
    ef_search: int = 384  # graph nodes a query keeps in view (at least the results asked for): recall@10 0.954 at 1M chunks, 0.929 at 128
    rebuild_share: float = 0.2  # removed vectors, as a share of the graph, that rebuild it

    @classmethod
    def from_settings(cls, settings) -> "VectorConfig":
        """From the settings object: QA_APPROXIMATE_FROM and QA_EF_SEARCH."""
        return cls(approximate_from=settings.approximate_from, ef_search=settings.ef_search)


class Graph:
    """An HNSW graph over chunk ids, with the ids removed since it was built."""

    def __init__(self, index: faiss.Index, removed: np.ndarray):
        self.index = index  # IndexIDMap2 over IndexHNSWSQ
        self.removed = np.unique(np.asarray(removed, dtype=np.int64))
        self.d = index.d

    @property
    def ntotal(self) -> int:
        """Live vectors."""
        return int(self.index.ntotal - len(self.removed))

    def reconstruct(self, chunk_id: int) -> np.ndarray:
        """The stored vector of a live chunk; RuntimeError when it is not in this generation."""
        if len(self.removed) and self.removed[min(np.searchsorted(self.removed, chunk_id), len(self.removed) - 1)] == chunk_id:
            raise RuntimeError(f"chunk {chunk_id} was removed")
        return self.index.reconstruct(int(chunk_id))

    def reconstruct_batch(self, ids: np.ndarray) -> np.ndarray:
        if np.isin(ids, self.removed).any():
            raise RuntimeError("a removed chunk")
        return self.index.reconstruct_batch(ids)


def empty(dimension: int) -> faiss.Index:
    """An empty exact index."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def kind(index) -> str:
    """`exact` or the approximate kind."""
    return APPROXIMATE if isinstance(index, Graph) else EXACT


def changed(index, remove: np.ndarray | None, vectors: np.ndarray | None, ids: np.ndarray | None,
            config: VectorConfig = VectorConfig()):
    """A new index: `index` without the ids `remove`, with `vectors` under `ids` added, of the
    kind its new size calls for. `index` itself is not changed."""
    remove = np.zeros(0, dtype=np.int64) if remove is None else np.asarray(remove, dtype=np.int64)
    if vectors is None or not len(vectors):
        vectors, ids = np.zeros((0, index.d), dtype=np.float32), np.zeros(0, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if not isinstance(index, Graph):
        updated = faiss.clone_index(index)
        if len(remove):
            updated.remove_ids(remove)
        if updated.ntotal + len(vectors) >= config.approximate_from:
            stored = _exact_vectors(updated)
            return _graph(np.concatenate([stored[0], vectors]), np.concatenate([stored[1], ids]))
        if len(vectors):
            updated.add_with_ids(vectors, ids)
        return updated
    present = faiss.vector_to_array(index.index.id_map)
    removed = np.union1d(index.removed, np.intersect1d(remove, present))
    live = index.index.ntotal - len(removed) + len(vectors)
    if live < config.approximate_from // 2:
        stored = _graph_vectors(index.index, removed)
        return _exact(np.concatenate([stored[0], vectors]), np.concatenate([stored[1], ids]), index.d)
    if len(removed) > config.rebuild_share * (index.index.ntotal + len(vectors)):
        stored = _graph_vectors(index.index, removed)
        return _graph(np.concatenate([stored[0], vectors]), np.concatenate([stored[1], ids]))
    updated = faiss.clone_index(index.index)
    if len(vectors):
        updated.add_with_ids(vectors, ids)
    return Graph(updated, removed)


def search(index, queries: np.ndarray, n: int, allowed: np.ndarray | None = None,
           config: VectorConfig = VectorConfig()) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the `n` most similar vectors to each query (id -1 where fewer exist).

    `allowed` (ids) restricts the search itself. On an approximate index a filter that keeps
    at most `EXACT_AMONG` vectors is searched exactly among them.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if not isinstance(index, Graph):
        params = None if allowed is None else faiss.SearchParameters(sel=_selector(allowed))
        return index.search(queries, n, params=params)
    if allowed is not None and len(allowed) <= EXACT_AMONG:
        return _search_among(index, queries, n, allowed)
    params = faiss.SearchParametersHNSW(efSearch=max(config.ef_search, n))
    keep = []  # the selectors must outlive the search
    if allowed is not None:
        keep.append(_selector(np.setdiff1d(allowed, index.removed)))
        params.sel = keep[-1]
    elif len(index.removed):
        keep += [_selector(index.removed)]
        keep.append(faiss.IDSelectorNot(keep[0]))
        params.sel = keep[-1]
    return index.index.search(queries, n, params=params)


def serialize(index) -> np.ndarray:
    """The bytes of an index, for the generation's vector file."""
    if not isinstance(index, Graph):
        return faiss.serialize_index(index)
    body = faiss.serialize_index(index.index)
    removed = index.removed.astype("<i8").tobytes()
    head = _HEADER + np.array([len(body), len(index.removed)], dtype="<i8").tobytes()
    return np.frombuffer(head + body.tobytes() + removed, dtype=np.uint8)


def deserialize(data: np.ndarray):
    """An index from the bytes of `serialize`; raises RuntimeError when they are not one."""
    return read(io.BytesIO(np.asarray(data, dtype=np.uint8).tobytes()))


def load(path) -> "faiss.Index | Graph":
    """The index in a file written from `serialize`, read as a stream, so that a large index is
    never held twice in memory; raises RuntimeError when the file is not one."""
    with open(path, "rb") as handle:
        return read(handle)


def read(handle) -> "faiss.Index | Graph":
    """The index in a binary stream holding `serialize`'s bytes, read from where it stands."""
    head = handle.read(len(_HEADER))
    if head != _HEADER:
        handle.seek(-len(head), io.SEEK_CUR)
        return faiss.read_index(faiss.PyCallbackIOReader(_reader(handle, None)))
    sizes = handle.read(16)
    if len(sizes) != 16:
        raise RuntimeError("the vector file is cut short")
    body_size, removed_count = (int(v) for v in np.frombuffer(sizes, dtype="<i8"))
    body_start = handle.tell()
    total = handle.seek(0, io.SEEK_END)
    handle.seek(body_start)
    if body_start + body_size + 8 * removed_count != total:
        raise RuntimeError("the vector file's sizes do not add up")
    index = faiss.read_index(faiss.PyCallbackIOReader(_reader(handle, body_size)))
    if handle.tell() != body_start + body_size:
        raise RuntimeError("the vector file's index is not the size it says")
    removed = np.frombuffer(handle.read(8 * removed_count), dtype="<i8").astype(np.int64)
    return Graph(index, removed)


# -- inside --------------------------------------------------------------------------------------

def _reader(handle, limit: int | None):
    """A FAISS read callback over an open file, stopping after `limit` bytes (None: the end)."""
    left = [limit]

    def read(size: int) -> bytes:
        if left[0] is not None:
            size = min(size, left[0])
            left[0] -= size
        return handle.read(size)
    return read


def _selector(ids: np.ndarray):
    return faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))


def _search_among(index: Graph, queries, n, allowed):
    present = np.setdiff1d(np.unique(np.asarray(allowed, dtype=np.int64)), index.removed)
    try:
        matrix = index.index.reconstruct_batch(present) if len(present) else np.zeros((0, index.d), dtype=np.float32)
    except RuntimeError:  # an id not in this generation: keep those that are
        kept = []
        for chunk_id in present:
            try:
                kept.append((chunk_id, index.index.reconstruct(int(chunk_id))))
            except RuntimeError:
                continue
        present = np.asarray([k for k, _ in kept], dtype=np.int64)
        matrix = np.stack([v for _, v in kept]) if kept else np.zeros((0, index.d), dtype=np.float32)
    scores = np.full((len(queries), n), -np.inf, dtype=np.float32)
    found = np.full((len(queries), n), -1, dtype=np.int64)
    if not len(present):
        return scores, found
    cosines = queries @ matrix.T
    take = min(n, len(present))
    top = np.argsort(-cosines, axis=1)[:, :take]
    scores[:, :take] = np.take_along_axis(cosines, top, axis=1)
    found[:, :take] = present[top]
    return scores, found


def _exact_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    return index.index.reconstruct_n(0, index.ntotal), faiss.vector_to_array(index.id_map).astype(np.int64)


def _graph_vectors(index: faiss.Index, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The live (vectors, ids) of a graph, float16-rounded as stored."""
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    vectors = index.index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), dtype=np.float32)
    live = ~np.isin(ids, removed)
    return vectors[live], ids[live]


def _exact(vectors: np.ndarray, ids: np.ndarray, dimension: int) -> faiss.Index:
    index = empty(dimension)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
    log.info("vector index: exact, %d vectors", index.ntotal)
    return index


def _graph(vectors: np.ndarray, ids: np.ndarray) -> Graph:
    dimension = vectors.shape[1]
    inner = faiss.IndexHNSWSQ(dimension, faiss.ScalarQuantizer.QT_fp16, _LINKS, faiss.METRIC_INNER_PRODUCT)
    inner.train(np.ascontiguousarray(vectors[:1000], dtype=np.float32))  # float16 needs no statistics
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    log.info("vector index: approximate (%s), %d vectors", APPROXIMATE, index.ntotal)
    return Graph(index, np.zeros(0, dtype=np.int64))
