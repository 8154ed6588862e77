"""Keyword search at a million chunks: FTS5 BM25 as the store queries it, timed per question.

Builds (once, cached beside the million-chunk benchmark's shards) an FTS5 table of the first
`--size` chunks of `bench/million.py`'s corpus (no vectors needed: the same chunk texts), then
times, for the dev questions, the store's two keyword queries:

- `keyword_chunks`: the best 50 chunks by BM25 for any of the question's terms;
- `document_frequencies`: one COUNT per question term (cached per generation in the service;
  timed here cold, as the first question after a change sees it).

    nice -n 19 .venv/bin/python bench/keywords.py --size 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.million import ROOT, Corpus, load_plan, log, shard_texts  # noqa: E402
from qa.evaluate import load_news, load_squad  # noqa: E402
from qa.store import IndexStore  # noqa: E402
from qa.text import keyword_terms  # noqa: E402


def build(path: Path, size: int, cache: Path) -> int:
    from qa.embedding import OnnxEncoder

    encoder = OnnxEncoder(threads=1)
    corpus = Corpus()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS done (shard INTEGER PRIMARY KEY, chunks INTEGER)")
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, tokenize='porter unicode61 remove_diacritics 2')")
    done = dict(db.execute("SELECT shard, chunks FROM done"))
    total = sum(done.values())
    next_id = 1 + total
    for shard in load_plan(cache)["shards"]:
        if total >= size:
            break
        if shard["shard"] in done:
            continue
        texts = shard_texts(cache, shard, corpus, encoder)
        with db:  # one shard per transaction: a killed build resumes at the next shard
            db.executemany("INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)", [(next_id + i, t) for i, t in enumerate(texts)])
            db.execute("INSERT INTO done VALUES (?, ?)", (shard["shard"], len(texts)))
        next_id += len(texts)
        total += len(texts)
        log(f"keyword index: {total:,} chunks")
    db.close()
    return total


def measure_bm25s(cache: Path, size: int, questions: list[str], depth: int) -> dict:
    """bm25s over the same chunk texts: build time, memory, and query time for the questions."""
    import resource

    import bm25s

    texts: list[str] = []
    for shard in load_plan(cache)["shards"]:
        if len(texts) >= size:
            break
        texts += shard_texts(cache, shard, None, None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    built = time.perf_counter() - began
    del texts
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    times = []
    for question in questions:
        start = time.perf_counter()
        tokens = bm25s.tokenize([question], stopwords="en", show_progress=False)
        retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
        times.append(time.perf_counter() - start)
    ms = lambda q: round(float(np.percentile(np.asarray(times) * 1000, q)), 1)  # noqa: E731
    return {"bm25s_build_s": round(built, 1), "bm25s_peak_memory_growth_mb": round(grown), "bm25s_top50_p50_ms": ms(50), "bm25s_top50_p95_ms": ms(95)}


def top(db, terms, depth) -> list[int]:
    """The store's keyword query: the best `depth` chunks by BM25 for any of `terms`."""
    query = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    rows = db.execute("SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?", (query, depth))
    return [row[0] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--cache", default=os.environ.get("QA_BENCH_CACHE", str(ROOT / "bench" / ".cache" / "million")))
    parser.add_argument("--depth", type=int, default=50, help="chunks asked of BM25 (the service's candidates)")
    parser.add_argument("--bm25s", action="store_true", help="also time bm25s (an in-memory sparse BM25; the bench extra) on the same texts")
    parser.add_argument("--common", type=int, nargs="+", default=[1000, 2000, 5000],
                        help="variants: terms held by more chunks than this left out (a question's two rarest kept)")
    args = parser.parse_args()
    cache = Path(args.cache)
    path = cache / f"keywords-{args.size}.sqlite"
    total = build(path, args.size, cache)
    _, squad = load_squad(ROOT / "data" / "squad" / "dev-v2.0-part.json")
    questions = [q.text for q in squad if q.answers] + [q.text for q in load_news(ROOT / "data" / "news_dev.jsonl") if q.answers]
    db = sqlite3.connect(path)
    db.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()  # warm the page cache a little
    ranked, counts, matched, rare_ranked, overlap = [], [], [], {}, {}
    for question in questions:
        terms = [t for t in dict.fromkeys(keyword_terms(question)) if t]
        start = time.perf_counter()
        full = top(db, terms, args.depth)
        ranked.append(time.perf_counter() - start)
        start = time.perf_counter()
        frequencies = [db.execute("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", ('"' + t.replace('"', '""') + '"',)).fetchone()[0]
                       for t in terms]
        counts.append(time.perf_counter() - start)
        matched.append(max(frequencies or [0]))
        # The variants: common terms left out, as the retriever does (QA_KEYWORD_COMMON).
        for limit in args.common:
            rarest = set(sorted(terms, key=lambda t: frequencies[terms.index(t)])[:2])
            kept = [t for t, f in zip(terms, frequencies) if f <= limit or t in rarest]
            start = time.perf_counter()
            fewer = top(db, kept, args.depth)
            rare_ranked.setdefault(limit, []).append(time.perf_counter() - start)
            overlap.setdefault(limit, []).append(len(set(full[:10]) & set(fewer[:10])) / max(1, min(10, len(full))))
    extra = measure_bm25s(cache, total, questions, args.depth) if args.bm25s else {}
    ms = lambda values, q: round(float(np.percentile(np.asarray(values) * 1000, q)), 1)  # noqa: E731
    print(json.dumps({
        "chunks": total, "questions": len(questions), "db_mb": round(path.stat().st_size / 2**20),
        "bm25_top50_p50_ms": ms(ranked, 50), "bm25_top50_p95_ms": ms(ranked, 95),
        "term_counts_p50_ms": ms(counts, 50), "term_counts_p95_ms": ms(counts, 95),
        "most_frequent_term_chunks_p50": int(np.median(matched)),
        "common_terms_left_out": {limit: {"p50_ms": ms(rare_ranked[limit], 50), "p95_ms": ms(rare_ranked[limit], 95),
                                          "same_top10_share": round(float(np.mean(overlap[limit])), 3)} for limit in args.common},
        "store_query": IndexStore.keyword_chunks.__doc__.splitlines()[0],
        **extra,
    }, indent=1))


if __name__ == "__main__":
    main()
