"""How many sentences the hybrid reader embeds, and how long its reading after the span model
takes: `read` (sentences of the most promising candidates first, stopping when the answers are
settled) against `candidates` (every candidate's sentence), on news_dev over the seed corpus.

The span model's spans are read once per question and reused, so only the part that differs is
timed. Both ways give the same answers (tests/test_neural_reader.py).

    .venv/bin/python bench/hybrid_sentences.py [--top-k 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa import Engine, Settings  # noqa: E402
from qa.readers.hybrid import HybridReader  # noqa: E402


class SpansOnce:
    """The span model's spans of one question and its passages, read once."""

    def __init__(self, inner):
        self.inner, self.memo = inner, {}

    def spans(self, question, passages):
        key = (question, tuple((p.article_id, p.start) for p in passages))
        if key not in self.memo:
            self.memo[key] = self.inner.spans(question, passages)
        return self.memo[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="each way is timed this many times, in turns")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(dataclasses.replace(Settings.from_env(), index_dir=Path(folder)))
        engine.ingest_paths(sorted((ROOT / "corpus").glob("*.txt")))
        shipped = engine.reader
        if not isinstance(shipped, HybridReader):
            print(f"the default reader is {shipped.name}, not the hybrid")
            return 1
        reader = HybridReader(SpansOnce(shipped.span_reader), shipped.rules, shipped.weights)
        questions = [json.loads(line)["question"] for line in (ROOT / "data" / "news_dev.jsonl").read_text().splitlines()
                     if line.strip()]
        passages = {q: engine.search(q, engine.settings.passages) for q in questions}
        for q in questions:  # warm: spans read, query vectors cached
            reader.read(q, passages[q], args.top_k)
        embedded = {"n": 0}
        cosines = shipped.rules.sentence_cosines

        def counted(question, sentences, which):
            embedded["n"] += len(which)
            return cosines(question, sentences, which)
        shipped.rules.sentence_cosines = counted
        ways = {"every sentence (candidates)": lambda q: reader.candidates(q, passages[q]),
                f"read, top_k={args.top_k}": lambda q: reader.read(q, passages[q], args.top_k)}
        for _ in range(args.rounds):
            for label, way in ways.items():
                embedded["n"], seconds = 0, []
                for q in questions:
                    began = time.perf_counter()
                    way(q)
                    seconds.append(time.perf_counter() - began)
                print(f"{label:28} p50 {1000 * statistics.median(seconds):6.1f} ms  mean {1000 * statistics.mean(seconds):6.1f} ms  "
                      f"sentences embedded {embedded['n']} ({len(questions)} questions)")
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
