"""(a) Ingest throughput: the whole pipeline against plain float32 `SentenceTransformer.encode`.

The pipeline (with the engine's encoder: the int8 ONNX one by default, QA_ENCODER=torch for
float32) reads JSONL, analyses articles, counts tokens, chunks, embeds and writes SQLite, FTS5
and the vectors atomically. The baseline only embeds the same chunk texts with the float32
sentence-transformers model (batch 64, as the service did before the int8 encoder). Ratio =
pipeline chunks/s over baseline chunks/s; the target of issue 13 is >= 2.5. Both in one run,
one after the other; the load average at the start is printed.

    .venv/bin/python bench/ingest.py [--articles 400]
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus import generate_articles  # noqa: E402
from qa import Engine, Settings  # noqa: E402
from qa.articles import read_paths  # noqa: E402
from qa.chunking import chunk_articles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / "articles.jsonl"
        source.write_text("\n".join(json.dumps(a) for a in generate_articles(args.articles)), encoding="utf-8")
        engine = Engine(Settings.from_env(index_dir=Path(directory) / "index", reader="rules"))
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(engine.settings.model, device="cpu")
        load = os.getloadavg()[0]
        chunks = chunk_articles(read_paths([source]), engine.encoder.count_tokens, engine.chunking)
        texts = [c.text for c in chunks]
        model.encode(texts[:64], batch_size=64)  # warm up

        began = time.perf_counter()
        model.encode(texts, batch_size=engine.settings.batch_size, normalize_embeddings=True)
        plain = time.perf_counter() - began
        engine.encoder.encode(texts[:8])  # warm up

        began = time.perf_counter()
        report = engine.ingest_paths([source])
        pipeline = time.perf_counter() - began
    print(f"articles {args.articles}, chunks {len(texts)} (pipeline made {report.chunks}); load average {load:.2f} at start")
    print(f"plain float32 SentenceTransformer.encode: {plain:7.2f} s  {len(texts) / plain:7.1f} chunks/s")
    print(f"full pipeline, encoder {engine.encoder.identity}: {pipeline:7.2f} s  {report.chunks / pipeline:7.1f} chunks/s")
    print(f"ratio (pipeline / plain throughput): {plain / pipeline:.3f}")


if __name__ == "__main__":
    main()
