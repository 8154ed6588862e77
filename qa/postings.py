"""Keyword search for large indexes: BM25 over posting lists that SQLite stores and numpy scores.

FTS5 scores every chunk that holds any word of the query, row by row through its `bm25()`
function: at a million chunks that took 14 to 15 ms p50 of a 25 ms search (bench/million.py).
Here each term's posting list is one blob, (chunk id, count, chunk length) per chunk that holds
the term, sorted by chunk id. A query reads its terms' blobs (one primary-key lookup each) and
scores them with numpy: about 1 ms at a million chunks.

The lists live in the index's SQLite file and change in the write's own transaction, so they are
always those of the generation a reader's snapshot names, and a crash loses nothing.

The score is FTS5's BM25 (k1 = 1.2, b = 0.75, the same inverse document frequency, clamped
the same way) over the service's own terms (`keyword_terms`, the words the question side looks
for), stemmed by Snowball's English stemmer as FTS5's porter tokenizer stems. A chunk's length is
its number of words.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import re
import threading
from typing import Iterable, Mapping, Sequence

import numpy as np
import snowballstemmer

from .text import STOPWORDS, count_words, keyword_terms

# One posting: a chunk that holds the term, how often, and the chunk's length in words.
POSTING = np.dtype([("chunk", "<i4"), ("count", "<u2"), ("length", "<u2")])

K1, B = 1.2, 0.75  # FTS5's bm25() defaults

# How words become stored terms (`analyse`): lists of another analysis are not read (the index
# records it), so a change here must bump it.
ANALYSIS = 1

# What joins the parts of one word in `keyword_terms` (after typography is folded).
_JOINED = re.compile(r"['.\-]")

# Below this many postings a query's scores are summed over the chunks it found (a sort);
# above, over an array as long as the largest chunk id (no sort, but a fixed cost).
_SORTED_SUM_LIMIT = 200_000


_STEMMER = snowballstemmer.stemmer("english")
_STEM_LOCK = threading.Lock()  # a Snowball stemmer keeps state between words


@functools.lru_cache(maxsize=65536)
def index_term(term: str) -> str:
    """The form in which a term (as `keyword_terms` gives it) is stored and looked up: its
    Snowball (Porter 2) stem, as FTS5's porter tokenizer stems ("drone" and "drones" are one)."""
    with _STEM_LOCK:
        return _STEMMER.stemWord(term)


def analyse(text: str) -> tuple[collections.Counter, int]:
    """A chunk's stored terms with their counts, and its length in words (stop words included).

    A word joined by hyphens, dots or apostrophes ("1994-95", "x-59", "o'brien") is stored
    whole and also as its parts, as FTS5 splits it: a question that asks for "1994" finds it.
    """
    counts: collections.Counter = collections.Counter()
    for term in keyword_terms(text):
        counts[index_term(term)] += 1
        if _JOINED.search(term):
            for part in _JOINED.split(term):
                if (len(part) > 1 or part.isdigit()) and part not in STOPWORDS:
                    counts[index_term(part)] += 1
    return counts, count_words(text)


def postings_of(chunks: Iterable[tuple[int, str]], batch: int = 50_000) -> tuple[dict[str, np.ndarray], int, int]:
    """The posting lists of (chunk id, text) pairs given in increasing id order, with how many
    chunks and words they hold. Read `batch` chunks at a time: a million chunks' lists are built
    as arrays (8 bytes a posting), never as a Python tuple each."""
    parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)
    chunk_count = words = 0
    items = iter(chunks)
    while True:
        group = list(itertools.islice(items, batch))
        if not group:
            break
        vocabulary: dict[str, int] = {}
        terms, ids, counts, lengths = [], [], [], []
        for chunk_id, text in group:
            found, length = analyse(text)
            length = min(length, 65535)
            for term, count in found.items():
                terms.append(vocabulary.setdefault(term, len(vocabulary)))
                ids.append(chunk_id)
                counts.append(min(count, 65535))
                lengths.append(length)
            chunk_count += 1
            words += length
        order = np.argsort(np.asarray(terms, dtype=np.int64), kind="stable")  # by term, ids kept in order
        rows = np.empty(len(order), dtype=POSTING)
        rows["chunk"] = np.asarray(ids, dtype=np.int64)[order]
        rows["count"] = np.asarray(counts, dtype=np.uint16)[order]
        rows["length"] = np.asarray(lengths, dtype=np.uint16)[order]
        bounds = np.searchsorted(np.asarray(terms, dtype=np.int64)[order], np.arange(len(vocabulary) + 1))
        for number, term in enumerate(vocabulary):
            parts[term].append(rows[bounds[number]:bounds[number + 1]])
    lists = {term: p[0] if len(p) == 1 else np.concatenate(p) for term, p in parts.items()}
    return lists, chunk_count, words


def merge(stored: bytes | None, removed: np.ndarray, added: np.ndarray | None) -> np.ndarray:
    """A term's stored list without the chunks `removed` (sorted ids), with `added` after it
    (new chunks have higher ids than any stored one, so the list stays sorted)."""
    old = np.frombuffer(stored, dtype=POSTING) if stored else np.empty(0, dtype=POSTING)
    if len(removed) and len(old):
        old = old[~np.isin(old["chunk"], removed)]
    if added is None or not len(added):
        return old
    if len(old) and int(added["chunk"][0]) <= int(old["chunk"][-1]):
        raise ValueError("new chunks must have higher ids than stored ones")
    return np.concatenate([old, added])


def best_chunks(lists: Mapping[str, bytes], chunk_count: int, words: int, n: int,
                allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The `n` best chunks by BM25 for any of the terms whose stored lists are given, as (chunk
    id, score; higher is better), best first, among the `allowed` chunk ids when given."""
    if chunk_count <= 0 or n <= 0:
        return []
    average = max(words / chunk_count, 1e-9)
    ids, scores = [], []
    for blob in lists.values():
        postings = np.frombuffer(blob, dtype=POSTING)
        frequency = len(postings)  # chunks that hold the term, before any filter
        if allowed is not None:
            postings = postings[np.isin(postings["chunk"], allowed)]
        if not len(postings):
            continue
        idf = math.log((chunk_count - frequency + 0.5) / (frequency + 0.5))
        idf = idf if idf > 0 else 1e-6  # as FTS5: a word in most chunks still counts a little
        count = postings["count"].astype(np.float32)
        norm = K1 * (1 - B + B * postings["length"].astype(np.float32) / average)
        ids.append(postings["chunk"])
        scores.append(idf * count * (K1 + 1) / (count + norm))
    if not ids:
        return []
    ids_all = np.concatenate(ids)
    scores_all = np.concatenate(scores)
    if len(ids) == 1:
        chunks, totals = ids_all, scores_all.astype(np.float64)
    elif len(ids_all) <= _SORTED_SUM_LIMIT:
        chunks, where = np.unique(ids_all, return_inverse=True)
        totals = np.bincount(where, weights=scores_all, minlength=len(chunks))
    else:
        summed = np.bincount(ids_all, weights=scores_all)
        chunks = np.flatnonzero(summed)
        totals = summed[chunks]
    if len(chunks) > n:
        # The n best, and of the chunks tied at the n-th score the lowest ids (`chunks` is in
        # increasing order): the same chunks whatever the filter or the size of `n`.
        nth = np.partition(totals, len(totals) - n)[len(totals) - n]
        above = totals > nth
        tied = np.flatnonzero(totals == nth)[: n - int(above.sum())]
        keep = np.concatenate([np.flatnonzero(above), tied])
        chunks, totals = chunks[keep], totals[keep]
    order = np.lexsort((chunks, -totals))  # best first; ties by chunk id
    return [(int(chunks[i]), float(totals[i])) for i in order]


def frequencies(rows: Sequence[tuple[str, int]], terms: Sequence[str]) -> dict[str, int]:
    """Each of `terms` with the number of chunks that hold it, from (stored term, count) rows."""
    found = dict(rows)
    return {term: found.get(index_term(term), 0) for term in terms}
