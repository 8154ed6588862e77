"""The long runs of issue 12 (the suite runs the same, shorter: tests/test_crash.py and
tests/test_concurrency.py; the harness is tests/crashkit.py).

1. Kill points: writes (`qa ingest` in a child, POST/DELETE through a real server) killed with
   SIGKILL at every write point in turn and at seeded random moments; after each kill the index
   is reopened and checked whole against what was acknowledged.
2. Readers and a writer: a real server with 8 clients asking, searching, citing and fetching, a
   9th adding, replacing and deleting, a second server process on the same folder.

    .venv/bin/python bench/soak.py                       # 300 kill points, then 10 minutes of load
    .venv/bin/python bench/soak.py --kills 30 --minutes 1 --seed 3

Prints figures (and one JSON line at the end); never fails on a time, but exits 1 when a
guarantee broke (an acknowledged article lost, a half-visible write, a 5xx, a bad offset).
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
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from qa import Engine
    from qa.embedding import make_encoder
    from qa.settings import Settings
    from tests import crashkit

    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=300, help="kill points (0: skip)")
    parser.add_argument("--minutes", type=float, default=10, help="minutes of readers and a writer (0: skip)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--work", default=None, help="folder for the indexes and logs (default: a new temporary one)")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="qa-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    encoder = make_encoder(Settings.from_env())
    figures: dict[str, object] = {"work": str(work)}
    broken = False

    if args.kills:
        index = work / "kill-index"
        engine = Engine(crashkit.settings_for(index, reader="rules"), encoder=encoder)
        engine.build_if_empty()
        engine.close()
        began = time.monotonic()
        (work / "kills").mkdir()
        report = crashkit.run_kill_points(index, work / "kills", encoder, args.kills, args.seed)
        print(f"kill points: {report.summary()} in {time.monotonic() - began:.0f}s "
              f"(a write lasts {report.write_seconds * 1000:.1f} ms)", flush=True)
        for (how, phase), count in sorted(report.phases.items()):
            print(f"  {how:<12} last point {phase:<16} {count}")
        figures["kills"] = {"kills": report.kills, "reopened": report.reopened, "acknowledged_lost": report.lost,
                            "half_visible": report.half, "outcomes": dict(report.outcomes),
                            "leftovers_cleaned": report.leftovers_cleaned, "failures": report.failures[:5],
                            "seconds": round(time.monotonic() - began)}
        broken |= bool(report.lost or report.half or report.failures or report.reopened != report.kills)

    if args.minutes:
        index = work / "load-index"
        engine = Engine(crashkit.settings_for(index, reader="rules"), encoder=encoder)
        engine.build_if_empty()
        engine.ingest_records([crashkit.article_record(key, 0) for key in range(6)])
        engine.close()
        (work / "load").mkdir()
        load = crashkit.run_readers_writer(index, work / "load", seconds=args.minutes * 60, seed=args.seed)
        result = load.figures()
        print("readers and a writer:", json.dumps(result), flush=True)
        figures["load"] = result
        broken |= bool(load.server_errors or load.bad_offsets or load.half_written or load.propagation_misses
                       or load.other_failures)

    print(json.dumps(figures))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
