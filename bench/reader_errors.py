"""Where end-to-end answers are lost: retrieval, the choice of passage, or the span in it.

For every answerable question of a dev set, the engine retrieves its passages and the hybrid
reader ranks every candidate span (no threshold, so abstaining is left out). Each question falls
in one of three cases:

- no passage: none of the retrieved passages holds a gold answer (retrieval lost it);
- other passage: one does, but the best candidate comes from another (the blend chose wrongly);
- right passage: the best candidate is in a passage that holds the answer (the span is what it is).

It prints each case's share of the F1 lost, and the F1 that a perfect choice of passage would
give (the best-scored candidate among the passages that hold the answer).

    .venv/bin/python bench/reader_errors.py                       # the shipped reader
    .venv/bin/python bench/reader_errors.py --reader-dir DIR --weights '{"span": 1.0, ...}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from qa.embedding import make_encoder  # noqa: E402
from qa.evaluate import _holds_answer, dev_engine, dev_questions, f1_score  # noqa: E402
from qa.readers.factory import SHIPPED_READER  # noqa: E402
from qa.readers.hybrid import HybridReader, HybridWeights  # noqa: E402
from qa.readers.neural import load_neural_reader  # noqa: E402
from qa.readers.rules import RuleReader  # noqa: E402
from qa.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def best_f1(text: str, answers) -> float:
    return max(f1_score(text, gold) for gold in answers)


def losses(path: Path, reader_dir: Path, weights: HybridWeights, settings: Settings) -> dict:
    encoder = make_encoder(settings)
    reader = HybridReader(load_neural_reader(reader_dir), RuleReader(encoder), weights)
    with dev_engine(path, settings, encoder=encoder, reader=reader) as engine:
        questions = dev_questions(path)
        cases: dict[str, list[float]] = {"no passage": [], "other passage": [], "right passage": []}
        top, chosen_right = [], []
        for question in (q for q in questions if q.answers):
            passages = engine.search(question.text, settings.passages)
            holds = [_holds_answer(p, question) for p in passages]
            candidates, _ = reader.candidates(question.text, passages)
            if not candidates:
                cases["no passage" if not any(holds) else "other passage"].append(0.0)
                top.append(0.0), chosen_right.append(0.0)
                continue
            best = max(candidates, key=reader.score)
            f1 = best_f1(passages[best.passage].text[best.start:best.end], question.answers)
            inside = [c for c in candidates if holds[c.passage]]
            right = max(inside, key=reader.score) if inside else None
            top.append(f1)
            chosen_right.append(best_f1(passages[right.passage].text[right.start:right.end], question.answers) if right else 0.0)
            case = "no passage" if not any(holds) else "right passage" if holds[best.passage] else "other passage"
            cases[case].append(f1)
    n = max(1, len(top))
    return {
        "file": path.name,
        "answerable": len(top),
        "f1_no_threshold": round(float(np.mean(top)), 3) if top else 0.0,
        "f1_with_right_passage": round(float(np.mean(chosen_right)), 3) if top else 0.0,
        "cases": {name: {"questions": len(v), "mean_f1": round(float(np.mean(v)), 3) if v else None,
                         "f1_lost": round(sum(1.0 - x for x in v) / n, 3)} for name, v in cases.items()},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="*", default=[str(ROOT / "data" / "squad" / "dev-v2.0-part.json"), str(ROOT / "data" / "news_dev.jsonl")])
    p.add_argument("--reader-dir", default=str(SHIPPED_READER), help="reader folder (default: the shipped one)")
    p.add_argument("--weights", default=None, help="hybrid weights as JSON (default: the reader folder's reader.json)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    reader_dir = Path(args.reader_dir)
    config = json.loads((reader_dir / "reader.json").read_text()) if (reader_dir / "reader.json").is_file() else {}
    weights = HybridWeights(**(json.loads(args.weights) if args.weights else config.get("hybrid", {})))
    settings = Settings.from_env()
    print(f"reader {reader_dir}, weights {dataclasses.asdict(weights)}")
    for f in args.files:
        print(json.dumps(losses(Path(f), reader_dir, weights, settings), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
