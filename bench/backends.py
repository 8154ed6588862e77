"""Both storage backends at scale: ingest rate and search latency at 100k chunks.

The chunks are real text: generated articles (bench/corpus.py) cut by the service's own chunker.
They are embedded once with the real model and the vectors kept in `--cache` (embedding is the
same work for both backends, and at ~40 chunks/s on this machine it would dominate both figures);
each backend is then built from the same articles, chunks and vectors through its own `write`,
in batches as an ingest makes them, and searched through the engine with the same questions.

    .venv/bin/python bench/backends.py --chunks 100000                # embed (once), then both
    .venv/bin/python bench/backends.py --chunks 100000 --embed-only    # just the vectors

Figures print; nothing fails on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.corpus import generate_articles  # noqa: E402
from qa.articles import make_article, read_paths  # noqa: E402
from qa.chunking import ChunkingConfig, chunk_articles  # noqa: E402
from qa.embedding import SentenceTransformerEncoder  # noqa: E402
from qa.settings import Settings  # noqa: E402

DATA = ROOT / "data"


def corpus(target_chunks: int, encoder, chunking: ChunkingConfig):
    """The seed articles plus generated ones until `target_chunks`, with their chunks."""
    articles = list(read_paths([ROOT / "corpus"]))
    chunks = chunk_articles(articles, encoder.count_tokens, chunking)
    # Generated in one go (the generator is seeded, so the same articles every run), then taken
    # in small steps so the index ends just past `target_chunks`.
    generated = generate_articles(max(1, target_chunks // 5), seed=11)
    number, step = 0, 100
    while len(chunks) < target_chunks and number < len(generated):
        more_articles = [make_article(a) for a in generated[number:number + step]]
        chunks += chunk_articles(more_articles, encoder.count_tokens, chunking)
        articles += more_articles
        number += step
    return articles, chunks


def embed(texts: list[str], encoder, cache: Path, real: int | None = None, block: int = 1024) -> np.ndarray:
    """The vectors of `texts`, embedded block by block into `cache` (a run that stops resumes).

    With `real`, only the first `real` texts (rounded up to a block) are embedded, and text i
    after them takes the vector of text i mod that many: flat (exact) searches, FAISS's and
    Milvus Lite's, cost the same whatever the values, and the texts (BM25) stay all distinct.
    """
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"vectors-{len(texts)}.npy"
    if path.exists():
        return np.load(path)
    if real is not None and real < len(texts):
        count = min(len(texts), -(-real // block) * block)
        vectors = embed_blocks(texts, encoder, cache, block, count)
        return vectors[np.arange(len(texts)) % count]
    return embed_blocks(texts, encoder, cache, block, len(texts), path)


def embed_blocks(texts: list[str], encoder, cache: Path, block: int, count: int, path: Path | None = None) -> np.ndarray:
    parts = []
    began = time.perf_counter()
    for first in range(0, count, block):
        part = cache / f"part-{len(texts)}-{first:07d}.npy"
        if not part.exists():
            np.save(part, encoder.encode(texts[first:first + block]))
            done = first + block
            print(f"  embedded {min(done, len(texts))}/{len(texts)} ({time.perf_counter() - began:.0f}s)", flush=True)
        parts.append(np.load(part))
    vectors = np.concatenate(parts).astype(np.float32)
    if path is not None:
        np.save(path, vectors)
        for first in range(0, len(texts), block):
            (cache / f"part-{len(texts)}-{first:07d}.npy").unlink(missing_ok=True)
    return vectors


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = sorted(s * 1000 for s in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--cache", default=str(ROOT / "bench" / ".cache" / "backends"))
    parser.add_argument("--backends", nargs="+", default=["sqlite", "milvus"])
    parser.add_argument("--embed-only", action="store_true")
    parser.add_argument("--real-vectors", type=int, default=None,
                        help="embed only this many chunks and reuse their vectors for the rest (see embed())")
    parser.add_argument("--batch", type=int, default=2000, help="chunks per write, as an ingest of a few hundred articles")
    parser.add_argument("--rounds", type=int, default=3, help="times each question is searched")
    args = parser.parse_args()

    settings = Settings.from_env()
    encoder = SentenceTransformerEncoder(settings.model)
    chunking = ChunkingConfig(settings.chunk_tokens, settings.chunk_overlap)
    cache = Path(args.cache)
    began = time.perf_counter()
    articles, chunks = corpus(args.chunks, encoder, chunking)
    print(f"{len(articles)} articles, {len(chunks)} chunks cut in {time.perf_counter() - began:.0f}s", flush=True)
    vectors = embed([c.text for c in chunks], encoder, cache, args.real_vectors)
    if args.embed_only:
        return
    run_backends(args, settings, encoder, articles, chunks, vectors, cache)


def run_backends(args, settings, encoder, articles, chunks, vectors, cache: Path) -> None:
    from qa.backends import open_backend
    from qa.engine import ADVISORY, Engine, index_manifest

    questions = [json.loads(l)["question"] for l in (DATA / "news_dev.jsonl").read_text().splitlines() if l.strip()]
    squad = json.loads((DATA / "squad" / "dev-v2.0-part.json").read_text())["data"]
    questions += [qa["question"] for p in squad[0]["paragraphs"][:6] for qa in p["qas"]][:26]
    by_article: dict[str, list[int]] = {}
    for number, chunk in enumerate(chunks):
        by_article.setdefault(chunk.article_id, []).append(number)
    engines = {}
    for backend in args.backends:
        folder = cache / f"index-{backend}-{len(chunks)}"
        run_settings = Settings.from_env(index_dir=folder, backend=backend, milvus_uri=str(folder / "milvus.db"))
        manifest = index_manifest(encoder, ChunkingConfig(run_settings.chunk_tokens, run_settings.chunk_overlap))
        if not (folder / "complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            store = open_backend(run_settings, manifest, ADVISORY)
            written, seconds, batch, batch_chunks = 0, 0.0, [], 0
            for number, article in enumerate(articles):
                batch.append(article)
                batch_chunks += len(by_article.get(article.id, ()))
                if batch_chunks >= args.batch or number == len(articles) - 1:
                    rows = [i for a in batch for i in by_article.get(a.id, ())]
                    started = time.perf_counter()
                    store.write(batch, [chunks[i] for i in rows], vectors[rows])
                    seconds += time.perf_counter() - started
                    written += len(rows)
                    batch, batch_chunks = [], 0
            store.close()
            (folder / "complete").write_text(f"{written} chunks in {seconds:.1f}s\n")
            print(f"[{backend}] wrote {written} chunks in {seconds:.0f}s: {written / seconds:.0f} chunks/s "
                  f"(store writes of {args.batch} chunks each; the vectors were embedded beforehand; "
                  f"load average {os.getloadavg()[0]:.2f})", flush=True)
        engines[backend] = Engine(run_settings, encoder=encoder)
        engines[backend].search("warm up", 10)
    # The backends take turns question by question, so that both see the same load.
    times = {backend: [] for backend in engines}
    for _ in range(args.rounds):
        for question in questions:
            encoder.encode_query(question)  # the query vector is cached: time the store and the fusion, not the model
            for backend, engine in engines.items():
                started = time.perf_counter()
                engine.search(question, 10)
                times[backend].append(time.perf_counter() - started)
    for backend, engine in engines.items():
        p50, p95 = percentiles(times[backend])
        print(f"[{backend}] {engine.health()['chunks']} chunks: search k=10 p50 {p50:.1f} ms, p95 {p95:.1f} ms "
              f"(n={len(times[backend])}; load average {os.getloadavg()[0]:.2f})", flush=True)
        engine.close()


if __name__ == "__main__":
    main()
