"""Side by side with txtai, in one run, on the same corpus and questions.

The corpus: the SQuAD v2.0 dev part's two articles, the five seed news articles and `--extra` real
articles of `../shared/data/qa-train` and the SQuAD train parts (distractors), cut into chunks by
this service. txtai (hybrid Embeddings: BM25 terms and dense vectors of the same all-MiniLM-L6-v2,
through sentence-transformers in float32) indexes the very same chunk texts. Questions: the
answerable ones of the SQuAD dev part and of news_dev; a hit is a chunk that holds a gold answer
(`qa eval`'s rule).

Rows: this service (its whole ingest: analyse, chunk, embed, write SQLite, FTS5 and vectors),
txtai (index the chunk texts), and plain float32 `SentenceTransformer.encode` of the same chunk
texts (the baseline of the ingest target). Needs the `bench` extra: `.venv/bin/pip install -e '.[bench]'`.

    .venv/bin/python bench/peers.py [--extra 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.million import Corpus  # noqa: E402
from qa import Engine, Settings  # noqa: E402
from qa.evaluate import _holds_answer, load_news, load_squad  # noqa: E402
from qa.records import Passage  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def percentile(seconds, q):
    return round(float(np.percentile(np.asarray(seconds) * 1000, q)), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=int, default=60, help="distractor articles beside the dev articles")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        from txtai import Embeddings
    except ImportError:
        raise SystemExit("txtai is not installed: .venv/bin/pip install -e '.[bench]'") from None

    corpus = Corpus()
    articles = corpus.real[: 7 + args.extra]  # the dev part's 2 and the 5 seed articles come first
    _, squad = load_squad(ROOT / "data" / "squad" / "dev-v2.0-part.json")
    questions = [q for q in squad if q.answers] + [q for q in load_news(ROOT / "data" / "news_dev.jsonl") if q.answers]
    load = os.getloadavg()[0]
    rows = {}
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings.from_env(index_dir=Path(directory) / "index", reader="rules")
        engine = Engine(settings)
        began = time.perf_counter()
        report = engine.ingest(articles)
        ours_ingest = time.perf_counter() - began
        with engine.store.reading():
            rows_db = engine.store._db.execute("SELECT id, article_id, start, end, text FROM chunks ORDER BY id").fetchall()
        chunks = {row[0]: row[1:] for row in rows_db}
        texts = [row[4] for row in rows_db]
        ours_times, ours_hits = search_ours(engine, questions)
        rows["this service (int8 ONNX, HNSW past 100k, FTS5)"] = row(len(texts), ours_ingest, ours_times, ours_hits)

        from sentence_transformers import SentenceTransformer

        from qa.settings import default_model

        model = SentenceTransformer(default_model(), device="cpu")
        model.encode(texts[:32])
        began = time.perf_counter()
        model.encode(texts, batch_size=64, normalize_embeddings=True)
        plain = time.perf_counter() - began
        rows["SentenceTransformer.encode, float32 (embedding only)"] = row(len(texts), plain, [], [])
        del model

        embeddings = Embeddings(path=default_model(), hybrid=True, content=True)
        began = time.perf_counter()
        embeddings.index([(str(cid), text, None) for cid, text in zip(chunks, texts)])
        txtai_ingest = time.perf_counter() - began
        times, hits = [], []
        for question in questions:
            start = time.perf_counter()
            found = embeddings.search(question.text, 5)
            times.append(time.perf_counter() - start)
            passages = [passage(chunks[int(r["id"])], r["score"]) for r in found]
            hits.append((any(_holds_answer(p, question) for p in passages[:1]), any(_holds_answer(p, question) for p in passages[:5])))
        rows["txtai 9.14 hybrid Embeddings (same model, float32)"] = row(len(texts), txtai_ingest, times, hits)
        engine.close()
    ours, txtai = rows["this service (int8 ONNX, HNSW past 100k, FTS5)"], rows["txtai 9.14 hybrid Embeddings (same model, float32)"]
    summary = {
        "chunks": len(texts), "articles": len(articles), "questions": len(questions), "load_average_at_start": round(load, 2),
        "ingest_vs_txtai": round(ours["ingest_chunks_per_s"] / txtai["ingest_chunks_per_s"], 2),
        "ingest_vs_float32_encode": round(ours["ingest_chunks_per_s"] / rows["SentenceTransformer.encode, float32 (embedding only)"]["ingest_chunks_per_s"], 2),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"{len(articles)} articles, {len(texts)} chunks, {len(questions)} answerable questions; load average {load:.2f} at start")
    print(f"| {'':55s} | ingest chunks/s | search p50 ms | p95 ms | top-1 | top-5 |")
    print(f"|{'-' * 57}|---|---|---|---|---|")
    for name, figures in rows.items():
        print(f"| {name:55s} | {figures['ingest_chunks_per_s']:.1f} | {figures.get('search_p50_ms', '')} | "
              f"{figures.get('search_p95_ms', '')} | {figures.get('top1', '')} | {figures.get('top5', '')} |")
    print(f"ingest: {summary['ingest_vs_txtai']}x txtai, {summary['ingest_vs_float32_encode']}x float32 encode alone")


def search_ours(engine: Engine, questions) -> tuple[list[float], list[tuple[bool, bool]]]:
    times, hits = [], []
    for question in questions:
        engine.encoder.forget_queries()  # cold: every query embedded, as txtai does
        start = time.perf_counter()
        passages = engine.search(question.text, 5)
        times.append(time.perf_counter() - start)
        hits.append((any(_holds_answer(p, question) for p in passages[:1]), any(_holds_answer(p, question) for p in passages[:5])))
    return times, hits


def passage(chunk, score) -> Passage:
    article_id, start, end, text = chunk
    return Passage(article_id, "", start, end, text, float(score), 0, 0, 0.0)


def row(chunks: int, ingest_seconds: float, times, hits) -> dict:
    figures = {"ingest_chunks_per_s": round(chunks / ingest_seconds, 1)}
    if times:
        figures.update({"search_p50_ms": percentile(times, 50), "search_p95_ms": percentile(times, 95),
                        "top1": round(float(np.mean([h[0] for h in hits])), 3), "top5": round(float(np.mean([h[1] for h in hits])), 3)})
    return figures


if __name__ == "__main__":
    main()
