"""`qa tune-reader`, judged on questions it did not tune on.

The tuner picks its settings on the very dev questions it then reports, so its figures flatter
it. This splits the SQuAD dev part in two halves (its first and second half of questions, which
keeps each article's questions together); for each half, it tunes on the other half with the news
sets, and measures the settings chosen on the half left out. The settings reader.json holds are
measured on the same questions, and the paired difference is printed with a 95% bootstrap
interval. (reader.json's settings were chosen on all of the dev part, so the comparison favours
them.)

    .venv/bin/python bench/tuning_holdout.py                         # the shipped reader
    .venv/bin/python bench/tuning_holdout.py --reader-dir DIR --rows ROWS.pkl

`--rows` keeps the collected candidates (about 3 minutes to collect) for the next run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from qa import tuning  # noqa: E402
from qa.evaluate import bootstrap_interval  # noqa: E402
from qa.readers.factory import SHIPPED_READER  # noqa: E402
from qa.settings import Settings  # noqa: E402

SQUAD = tuning.DEV_SETS[0].name


def rows_of(reader_dir: Path, cache: Path | None = None, files=tuning.DEV_SETS) -> list[tuning.Row]:
    """What retrieval and the reader's span model find for every question of `files` (the dev
    sets; `tuning.collect`), read from `cache` if it exists, else collected (a few minutes) and
    written there."""
    if cache and cache.is_file():
        rows = pickle.loads(cache.read_bytes())
        # A cache of other sets (written before a dev set was added) would be judged silently
        # on fewer sets: collect again.
        if {row.set for row in rows} == {Path(f).name for f in files}:
            return rows
    rows = tuning.collect(files, Settings.from_env(), reader_dir)
    if cache:
        cache.write_bytes(pickle.dumps(rows))
    return rows


def decisions(rows: list[tuning.Row], result: dict) -> tuple[np.ndarray, np.ndarray]:
    """Under one result of `tune` or `measure`, applied to `rows`: each question's best
    candidate's F1, and whether it is answered."""
    if "weights" in result:
        best, f1 = tuning.hybrid_scores(rows, result["weights"])
    else:
        best, f1 = tuning.neural_scores(rows)
    return f1, tuning.answered_mask(rows, {**result, "best": best, "f1": f1})


def per_question(rows: list[tuning.Row], result: dict) -> np.ndarray:
    """Each question's v2 score under one result of `tune` or `measure`, scored on `rows`."""
    return tuning.Outcome(rows).per_question(*decisions(rows, result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader-dir", default=str(SHIPPED_READER))
    parser.add_argument("--rows", help="a pickle of collected candidates: read if it exists, else written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    reader_dir = Path(args.reader_dir)
    rows = rows_of(reader_dir, Path(args.rows) if args.rows else None)
    config = json.loads((reader_dir / "reader.json").read_text())
    default = config.get("default", "hybrid")

    squad = [i for i, r in enumerate(rows) if r.set == SQUAD]
    news = [i for i, r in enumerate(rows) if r.set != SQUAD]
    halves = (squad[: len(squad) // 2], squad[len(squad) // 2:])
    tuned, shipped, answerable = [], [], []
    for k, held_out in enumerate(halves):
        fit = [rows[i] for i in halves[1 - k] + news]
        test = [rows[i] for i in held_out]
        results = tuning.tune(fit)
        chosen = max(results, key=lambda name: results[name]["key"])
        setting = results[chosen].get("weights") or {key: results[chosen][key] for key in
                                                     ("threshold", "min_coverage", "max_unmatched_names")}
        print(f"half {k + 1} held out: tuned on the other half chose {chosen} {setting}")
        tuned.append(per_question(test, results[chosen]))
        shipped.append(per_question(test, tuning.measure(test, config)[default]))
        answerable.append(np.array([r.answerable for r in test]))
    tuned_v, shipped_v, mask = np.concatenate(tuned), np.concatenate(shipped), np.concatenate(answerable)
    print(f"SQuAD dev part, {len(mask)} questions each scored by settings tuned without it:")
    for label, values in (("tuned", tuned_v), (f"reader.json ({default})", shipped_v)):
        print(f"  {label}: answerable F1 {values[mask].mean():.3f}, v2 overall {values.mean():.3f}")
    for what, m in (("v2 overall", np.ones_like(mask)), ("answerable F1", mask)):
        d = tuned_v[m] - shipped_v[m]
        lo, hi = bootstrap_interval(d)
        print(f"  tuned - reader.json, {what}: {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
