"""The shipped int8 models on this CPU: with their int8 weights as stored (u8 x s8 products) and
made unsigned (u8 x u8), as `qa/int8.py` loads them where the CPU has no VNNI.

For the reader: answerable F1 and best v2 overall on the gold paragraphs of the SQuAD dev part,
the span model's EM on news_dev (over its gold article's chunks), and the median time of a read
of 8 passages. For the encoder: how far its vectors for the seed articles' sentences move (the
smallest cosine to the other form's vector) and the median time to embed them. Prints figures;
not a test. On a CPU with VNNI both forms should agree to the last digit of the scores.

    .venv/bin/python bench/int8_cpu.py [--reader DIR] [--encoder DIR] [--runs N]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from qa import cpu  # noqa: E402
from qa.embedding import SHIPPED_ENCODER, OnnxEncoder  # noqa: E402
from qa.readers.factory import SHIPPED_READER  # noqa: E402
from qa.readers.neural import NeuralReader  # noqa: E402
from qa.training.data import DEFAULT_DEV, PROJECT_DIR  # noqa: E402
from qa.training.evaluation import evaluate_gold, evaluate_news, measure_latency  # noqa: E402

FORMS = {"int8 weights as stored (u8 x s8)": True, "int8 weights made unsigned (u8 x u8)": False}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reader", type=Path, default=SHIPPED_READER)
    p.add_argument("--encoder", type=Path, default=SHIPPED_ENCODER)
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sums_exactly = cpu.sums_int8_exactly()
    print(f"this CPU sums u8 x s8 exactly (VNNI, or not x86): {sums_exactly}; "
          f"the service loads the {'stored' if sums_exactly else 'unsigned'} form")
    sentences = [s for f in sorted((PROJECT_DIR / "corpus").glob("*.txt"))
                 for s in f.read_text(encoding="utf-8").split(". ") if s.strip()]
    vectors = {}
    print(f"{'form':<40} {'F1':>6} {'best v2':>8} {'news EM':>8} {'read ms':>8} {'embed ms':>9}")
    for form, stored in FORMS.items():
        # Both forms on any CPU: the loader is told which one instead of asking the CPU.
        cpu.sums_int8_exactly = lambda stored=stored: stored
        reader = NeuralReader(args.reader)
        gold = evaluate_gold(reader, DEFAULT_DEV)
        news = evaluate_news(reader, PROJECT_DIR / "data" / "news_dev.jsonl", PROJECT_DIR / "corpus")
        read_ms = measure_latency(reader, PROJECT_DIR / "corpus", runs=args.runs) * 1000
        encoder = OnnxEncoder(args.encoder, threads=1)
        vectors[form] = encoder.encode(sentences)
        times = []
        for _ in range(3):
            began = time.perf_counter()
            encoder.encode(sentences)
            times.append(time.perf_counter() - began)
        print(f"{form:<40} {gold['f1']:>6.4f} {gold['best_overall_f1']:>8.4f} {news['em']:>8.4f} "
              f"{read_ms:>8.0f} {sorted(times)[1] * 1000:>9.0f}", flush=True)
    a, b = vectors.values()
    print(f"encoder, {len(sentences)} sentences: smallest cosine between the two forms' vectors "
          f"{float(np.min(np.sum(a * b, axis=1))):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
