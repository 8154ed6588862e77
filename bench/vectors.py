"""Which approximate vector index: recall@10 against exact search and time per query, on real
text vectors (the int8 encoder's vectors of `bench/million.py`'s chunks, never random ones).

Queries: 1,000 real questions (SQuAD train part and dev part questions, the news dev set), one
at a time as the service asks them, on `--threads` FAISS threads. Candidates: exact (flat),
IVF with float32, float16 and 8-bit lists, and HNSW (float32, float16, 8-bit), at a few search depths.

    nice -n 19 .venv/bin/python bench/vectors.py --sizes 50000 100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from bench.million import ROOT, load_plan, shard_path  # noqa: E402


def questions() -> list[str]:
    from qa.evaluate import load_news, load_squad
    from qa.squad import read_squad

    shared = ROOT.parent / "shared" / "data" / "squad"
    texts = [q.text for q in load_squad(ROOT / "data" / "squad" / "dev-v2.0-part.json")[1]]
    texts += [q.text for q in load_news(ROOT / "data" / "news_dev.jsonl")]
    texts += [e.question for e in read_squad(shared / "train-v1.1-part.json")]
    return list(dict.fromkeys(texts))[:1000]


def load_vectors(cache: Path, size: int) -> np.ndarray:
    parts, total = [], 0
    for shard in load_plan(cache)["shards"]:
        if total >= size or not shard_path(cache, shard["shard"]).exists():
            break
        parts.append(np.load(shard_path(cache, shard["shard"])))
        total += len(parts[-1])
    vectors = np.concatenate(parts)[:size]
    if len(vectors) < size:
        raise SystemExit(f"only {len(vectors):,} vectors are embedded")
    return np.ascontiguousarray(vectors)


def timed_search(index, queries, k, params=None):
    times, found = [], []
    for query in queries:  # one at a time, as a request asks
        start = time.perf_counter()
        _, ids = index.search(query[None, :], k, params=params)
        times.append(time.perf_counter() - start)
        found.append(ids[0])
    return np.array(found), np.array(times)


def recall(found, exact):
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--cache", default=os.environ.get("QA_BENCH_CACHE", str(ROOT / "bench" / ".cache" / "million")))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    from qa.embedding import OnnxEncoder

    queries = OnnxEncoder(threads=args.threads).encode(questions()[: args.queries])
    results = []
    for size in args.sizes:
        vectors = load_vectors(Path(args.cache), size)
        d = vectors.shape[1]
        flat = faiss.IndexFlatIP(d)
        flat.add(vectors)
        exact, times = timed_search(flat, queries, 10)
        results.append({"size": size, "index": "exact (flat)", "recall@10": 1.0, "p50_ms": round(float(np.median(times)) * 1000, 2),
                        "mb": round(vectors.nbytes / 2**20)})
        print(json.dumps(results[-1]), flush=True)
        lists = int(2 ** round(math.log2(2 * math.sqrt(size))))
        sample = vectors[np.random.default_rng(0).choice(len(vectors), min(len(vectors), 100_000), replace=False)]
        for name, quantizer_type in (("IVF float32", None), ("IVF float16", faiss.ScalarQuantizer.QT_fp16), ("IVF 8-bit", faiss.ScalarQuantizer.QT_8bit)):
            coarse = faiss.IndexFlatIP(d)
            if quantizer_type is None:
                index = faiss.IndexIVFFlat(coarse, d, lists, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFScalarQuantizer(coarse, d, lists, quantizer_type, faiss.METRIC_INNER_PRODUCT, False)
            began = time.perf_counter()
            index.train(sample)
            index.add(vectors)
            build = time.perf_counter() - began
            size_mb = round(faiss.serialize_index(index).nbytes / 2**20)
            for probes in (8, 16, 32, 64):
                found, times = timed_search(index, queries, 10, faiss.SearchParametersIVF(nprobe=probes))
                results.append({"size": size, "index": f"{name}, {lists} lists", "depth": f"nprobe {probes}", "recall@10": round(recall(found, exact), 4),
                                "p50_ms": round(float(np.median(times)) * 1000, 2), "p95_ms": round(float(np.percentile(times, 95)) * 1000, 2),
                                "mb": size_mb, "build_s": round(build, 1)})
                print(json.dumps(results[-1]), flush=True)
        for name, make in (("HNSW32 float32", lambda: faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)),
                           ("HNSW32 float16 (shipped)", lambda: faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_fp16, 32, faiss.METRIC_INNER_PRODUCT)),
                           ("HNSW32 8-bit", lambda: faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT))):
            index = make()
            began = time.perf_counter()
            if not index.is_trained:
                index.train(sample)
            index.add(vectors)
            build = time.perf_counter() - began
            size_mb = round(faiss.serialize_index(index).nbytes / 2**20)
            for ef in (32, 64, 128):
                found, times = timed_search(index, queries, 10, faiss.SearchParametersHNSW(efSearch=ef))
                results.append({"size": size, "index": name, "depth": f"efSearch {ef}", "recall@10": round(recall(found, exact), 4),
                                "p50_ms": round(float(np.median(times)) * 1000, 2), "p95_ms": round(float(np.percentile(times, 95)) * 1000, 2),
                                "mb": size_mb, "build_s": round(build, 1)})
                print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
