"""(b) Search, ask and cite latency in process, and (c) resident memory, at growing index sizes.

The index holds the five seed articles plus generated ones (bench/corpus.py), ingested through
the real pipeline (model, FAISS, SQLite). Questions: data/news_dev.jsonl and the first
questions of the SQuAD dev part; citation texts: data/cite_dev.jsonl. The built index is
kept in bench/.cache/ so that a second run measures without re-embedding.

    .venv/bin/python bench/latency.py [--sizes 10000 100000] [--reader auto]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.corpus import generate_articles  # noqa: E402
from qa import Engine, Settings  # noqa: E402
from qa.articles import make_article  # noqa: E402

SHARED = ROOT / "data"  # the dev sets, copied into the project (data/README.md)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"p50 {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms  (n={len(ms)})"


def timed(function, inputs) -> list[float]:
    out = []
    for item in inputs:
        began = time.perf_counter()
        function(item)
        out.append(time.perf_counter() - began)
    return out


def grow(engine: Engine, target_chunks: int, start_number: int, deadline: float) -> int:
    """Ingest generated articles until the index holds `target_chunks` (or the build deadline
    passes: the figures are then for the size reached, which is printed); returns the next number."""
    number = start_number
    while engine.store.counts()[1] < target_chunks and time.monotonic() < deadline:
        missing = target_chunks - engine.store.counts()[1]
        batch = max(50, min(500, missing // 5 + 1))
        generated = generate_articles(number + batch, seed=11)[number:]
        began = time.perf_counter()
        report = engine.ingest([make_article(a) for a in generated])
        number += batch
        print(f"  ingested {batch} articles, {report.chunks} chunks in {time.perf_counter() - began:.0f}s "
              f"(index: {engine.store.counts()[1]} chunks)", flush=True)
    return number


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--reader", default=None)
    parser.add_argument("--cache", default=str(ROOT / "bench" / ".cache" / "index"))
    parser.add_argument("--build-minutes", type=float, default=600.0, help="stop growing the index after this long")
    args = parser.parse_args()

    overrides = {"index_dir": Path(args.cache), "corpus_dir": ROOT / "corpus"}
    if args.reader:
        overrides["reader"] = args.reader
    engine = Engine(Settings.from_env(**overrides))
    engine.build_if_empty()
    questions = [json.loads(l)["question"] for l in (SHARED / "news_dev.jsonl").read_text().splitlines() if l.strip()]
    news = len(questions)
    squad = json.loads((SHARED / "squad" / "dev-v2.0-part.json").read_text())["data"]
    questions += [qa["question"] for p in squad[0]["paragraphs"][:6] for qa in p["qas"]][:26]
    cites = [json.loads(l) for l in (SHARED / "cite_dev.jsonl").read_text().splitlines() if l.strip()]
    print(f"reader: {engine.reader.name}; {len(questions)} questions; {len(cites)} citation texts")

    number = 0
    deadline = time.monotonic() + args.build_minutes * 60
    for size in args.sizes:
        number = max(number, len([i for i in engine.store.article_ids() if i.startswith("gen-")]))
        number = grow(engine, size, number, deadline)
        articles, chunks = engine.store.counts()
        engine.search("warm up", 10), engine.ask("warm up?")
        print(f"\n== {chunks} chunks, {articles} articles")
        print(f"search k=10        {percentiles(timed(lambda q: engine.search(q, 10), questions))}")
        print(f"ask top_k=3        {percentiles(timed(lambda q: engine.ask(q, 3), questions))}")
        # The SQuAD questions are about articles the seed corpus lacks: the reader's gates refuse
        # most of them before the span model runs, so the news questions alone show a read's cost.
        print(f"ask, news only     {percentiles(timed(lambda q: engine.ask(q, 3), questions[:news]))}")
        for kind in ("exact", "near", "paraphrase", "unrelated"):
            texts = [c["text"] for c in cites if c["kind"] == kind]
            engine.cite(texts[0])  # the first lookup of an article embeds its sentences once
            label = "semantic" if kind in ("paraphrase", "unrelated") else kind
            print(f"cite {kind:<13} {percentiles(timed(lambda t: engine.cite(t), texts))}  [{label}]")
        print(f"resident memory    {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
