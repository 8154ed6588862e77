"""The vectors of one index generation: exact search below a size, approximate above it.

Below `VectorConfig.approximate_from` vectors the index is exact: a flat inner-product scan
(`IndexIDMap2(IndexFlatIP)`). From that size on it becomes an inverted file (`IndexIVFScalarQuantizer`)
whose lists store each vector in float16: a query scans only the `nprobe` lists whose centroids are
closest, and float16 keeps scores within about 1e-3 of the exact cosine at half the memory. Picked by
measurement on real text vectors (`bench/vectors.py`, `docs/measurements.md`): against HNSW it
keeps removal (replace and delete) and exact-by-id reconstruction, and it needs no float32 copy.

Indexes are values: `changed` returns a new index and never alters the one given, so readers of the
current generation keep theirs while a writer prepares the next (`qa.store`). Chunk ids are the
FAISS ids in both kinds.

When an approximate index grows to four times the size it was trained at, or shrinks below half
the threshold, the next change re-trains it (or returns to exact), from its own vectors.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)

EXACT = "exact"
APPROXIMATE = "ivf-sq-fp16"

# A filter that keeps at most this many vectors is searched exactly among them on an approximate
# index (a few milliseconds), since the probed lists may hold few or none of them.
EXACT_AMONG = 50_000


@dataclass(frozen=True)
class VectorConfig:
    """When the index turns approximate, and how hard an approximate search looks."""

    @classmethod
    def from_settings(cls, settings) -> "VectorConfig":
        """From the settings object (`QA_APPROXIMATE_FROM` and the search depth)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {"approximate_from": settings.approximate_from}
        for name in ("probe_share", "ef_search"):
            if name in known and hasattr(settings, name):
                values[name] = getattr(settings, name)
        return cls(**values)

    approximate_from: int = 200_000  # vectors; exact below
    probe_share: float = 0.03  # share of the inverted lists a query scans (at least `min_probes`)
    min_probes: int = 16
    train_sample: int = 100_000  # vectors k-means trains the centroids on (at most)

    def lists_for(self, size: int) -> int:
        """How many inverted lists for `size` vectors: about 2 x sqrt(size), a power of two."""
        return int(2 ** round(math.log2(max(16.0, 2 * math.sqrt(max(size, 1))))))

    def probes_for(self, lists: int) -> int:
        return min(lists, max(self.min_probes, int(round(lists * self.probe_share))))


def empty(dimension: int) -> faiss.Index:
    """An empty exact index."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def kind(index: faiss.Index) -> str:
    """`exact` or the approximate kind."""
    return APPROXIMATE if _ivf(index) is not None else EXACT


def changed(index: faiss.Index, remove: np.ndarray | None, vectors: np.ndarray | None, ids: np.ndarray | None,
            config: VectorConfig = VectorConfig()) -> faiss.Index:
    """A new index: `index` without the ids `remove`, with `vectors` under `ids` added, of the
    kind its new size calls for. `index` itself is not changed."""
    updated = faiss.clone_index(index)
    if _ivf(updated) is not None:
        # A clone keeps the lists but not always the id lookup: make sure removal works by id.
        _ivf(updated).make_direct_map(False)
        _ivf(updated).set_direct_map_type(faiss.DirectMap.Hashtable)
    if remove is not None and len(remove):
        updated.remove_ids(np.ascontiguousarray(remove, dtype=np.int64))
    if vectors is not None and len(vectors):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if _ivf(updated) is None and updated.ntotal + len(vectors) >= config.approximate_from:
            return _approximate(*_concat(_all_vectors(updated), (vectors, ids)), config)
        updated.add_with_ids(vectors, ids)
    ivf = _ivf(updated)
    if ivf is not None:
        if updated.ntotal < config.approximate_from // 2:
            return _exact(*_all_vectors(updated), index.d)
        if config.lists_for(updated.ntotal) >= 2 * ivf.nlist:
            return _approximate(*_all_vectors(updated), config)
    return updated


def search(index: faiss.Index, queries: np.ndarray, n: int, allowed: np.ndarray | None = None,
           config: VectorConfig = VectorConfig()) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the `n` most similar vectors to each query (id -1 where fewer exist).

    `allowed` (ids) restricts the search itself. On an approximate index a filter that keeps
    few vectors is searched exactly among them: the probed lists might hold none of them.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    ivf = _ivf(index)
    if ivf is None:
        params = None if allowed is None else faiss.SearchParameters(sel=_selector(allowed))
        return index.search(queries, n, params=params)
    if allowed is not None and len(allowed) <= EXACT_AMONG:
        return _search_among(index, queries, n, allowed)
    params = faiss.SearchParametersIVF(nprobe=config.probes_for(ivf.nlist))
    if allowed is not None:
        params.sel = _selector(allowed)
    return index.search(queries, n, params=params)


def serialize(index: faiss.Index) -> np.ndarray:
    return faiss.serialize_index(index)


def deserialize(data: np.ndarray) -> faiss.Index:
    """An index from `serialize`; raises RuntimeError when the bytes are not one."""
    index = faiss.deserialize_index(data)
    ivf = _ivf(index)
    if ivf is not None and ivf.direct_map.type != faiss.DirectMap.Hashtable:
        ivf.make_direct_map(False)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


# -- inside --------------------------------------------------------------------------------------

def _ivf(index: faiss.Index):
    """The inverted-file index, or None for an exact one."""
    if isinstance(index, faiss.IndexIVF):
        return index
    index = faiss.downcast_index(index)
    return index if isinstance(index, faiss.IndexIVF) else None


def _selector(allowed: np.ndarray):
    return faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))


def _search_among(index, queries, n, allowed):
    present = np.unique(np.asarray(allowed, dtype=np.int64))
    try:
        matrix = index.reconstruct_batch(present) if len(present) else np.zeros((0, index.d), dtype=np.float32)
    except RuntimeError:  # an id not in this generation: keep those that are
        kept = []
        for chunk_id in present:
            try:
                kept.append((chunk_id, index.reconstruct(int(chunk_id))))
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


def _all_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, ids) of every entry, as stored (float16-rounded for an approximate index)."""
    ivf = _ivf(index)
    if ivf is None:
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        return index.index.reconstruct_n(0, index.ntotal), ids
    invlists = ivf.invlists
    all_ids, all_vectors = [], []
    for number in range(ivf.nlist):
        size = invlists.list_size(number)
        if not size:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(number), size).copy()
        codes = faiss.rev_swig_ptr(invlists.get_codes(number), size * invlists.code_size).copy()
        all_ids.append(ids)
        all_vectors.append(_decode(ivf, codes, size))
    if not all_ids:
        return np.zeros((0, index.d), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(all_vectors), np.concatenate(all_ids)


def _decode(ivf, codes: np.ndarray, size: int) -> np.ndarray:
    # The scalar quantizer stores vectors themselves, not residuals, so its codes decode alone.
    return ivf.sq.decode(codes.reshape(size, -1)).reshape(size, ivf.d)


def _concat(first, second):
    return np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])


def _exact(vectors: np.ndarray, ids: np.ndarray, dimension: int) -> faiss.Index:
    index = empty(dimension)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
    log.info("vector index: exact, %d vectors", index.ntotal)
    return index


def _approximate(vectors: np.ndarray, ids: np.ndarray, config: VectorConfig) -> faiss.Index:
    dimension = vectors.shape[1]
    lists = config.lists_for(len(vectors))
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dimension, lists, faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT, False)
    # A fixed sample and seed: the same vectors give the same index.
    rng = np.random.default_rng(0)
    sample = vectors if len(vectors) <= config.train_sample else vectors[np.sort(rng.choice(len(vectors), config.train_sample, replace=False))]
    index.cp.seed = 1234
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    log.info("vector index: approximate (%s), %d vectors in %d lists", APPROXIMATE, index.ntotal, lists)
    return index
