"""Ask latency and throughput with several requests at once, as the API's thread pool serves them.

Each level of concurrency runs the same questions (news_dev plus SQuAD dev-part questions)
from that many threads at once over one engine, with the query cache emptied first.

    .venv/bin/python bench/concurrency.py [--cache /tmp/seed] [--clients 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa import Engine, Settings  # noqa: E402

SHARED = ROOT / "data"  # the dev sets, copied into the project (data/README.md)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", default=str(ROOT / "bench" / ".cache" / "seed"), help="index folder (built from corpus/ if empty)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=2, help="times each question is asked per level")
    args = parser.parse_args()

    engine = Engine(Settings.from_env(index_dir=Path(args.cache), corpus_dir=ROOT / "corpus"))
    engine.build_if_empty()
    questions = [json.loads(l)["question"] for l in (SHARED / "news_dev.jsonl").read_text().splitlines() if l.strip()]
    squad = json.loads((SHARED / "squad" / "dev-v2.0-part.json").read_text())["data"]
    questions += [qa["question"] for p in squad[0]["paragraphs"][:6] for qa in p["qas"]][:26]
    engine.ask("warm up?")
    print(f"{engine.store.counts()[1]} chunks; {len(questions)} questions x {args.rounds}")
    for clients in args.clients:
        work = [q + "?" * (r + 1) for r in range(args.rounds) for q in questions]  # distinct texts: no cache hits
        engine.encoder.forget_queries()

        def ask(question: str) -> float:
            began = time.perf_counter()
            engine.ask(question, 3)
            return time.perf_counter() - began

        began = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = sorted(pool.map(ask, work))
        wall = time.perf_counter() - began
        p95 = latencies[int(round(0.95 * (len(latencies) - 1)))]
        print(f"{clients} clients: ask p50 {statistics.median(latencies) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
              f"{len(work) / wall:5.1f} questions/s")


if __name__ == "__main__":
    main()
