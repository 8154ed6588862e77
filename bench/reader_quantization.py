"""Which int8 form of a trained reader keeps its reading, and at what speed.

From a training run's float32 ONNX export and its checkpoint (for the tokenizer), builds each
int8 form the training command can choose (`qa.training.cli`: per tensor, per channel, mixed,
weight-only), and, with `--layers`, per channel with one layer's feed-forward output left in
float32. Each is scored on the gold paragraphs of the dev part (answerable F1, best v2 overall at
any threshold) and timed on 8 passages (median of `--runs`, one process, back to back, so the
times compare with each other rather than with figures taken elsewhere). Prints figures; not a
test.

    .venv/bin/python bench/reader_quantization.py WORK/onnx/model.fp32.onnx WORK/checkpoint [--layers]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qa.readers.neural import NeuralReader  # noqa: E402
from qa.training.data import DEFAULT_DEV, PROJECT_DIR  # noqa: E402
from qa.training.evaluation import evaluate_gold, measure_latency  # noqa: E402
from qa.training.export import INT8_FORMS, folder_size, quantize_onnx, stage_reader, wide_matmuls  # noqa: E402

CONFIG = {"max_length": 256, "stride": 96, "max_answer_tokens": 30, "threshold": 0.0, "n_best": 20,
          "support_weight": 1.0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fp32", type=Path, help="the float32 ONNX export of a training run")
    p.add_argument("checkpoint", type=Path, help="its checkpoint folder (tokenizer files)")
    p.add_argument("--layers", action="store_true", help="also each layer's feed-forward output alone in float32")
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    forms = {"float32": None, **INT8_FORMS}
    if args.layers:
        for layer, name in enumerate(wide_matmuls(args.fp32)):
            forms[f"per-channel, layer {layer} feed-forward output float32"] = (
                lambda src, dst, name=name: quantize_onnx(src, dst, per_channel=True, exclude=[name]))
    print(f"{'form':<52} {'F1':>6} {'best v2':>8} {'ms':>5} {'MB':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (form, make) in enumerate(forms.items()):
            onnx_file = args.fp32
            if make is not None:
                onnx_file = make(args.fp32, Path(tmp) / f"{i}.onnx")
            folder = stage_reader(Path(tmp) / str(i), onnx_file, args.checkpoint, dict(CONFIG))
            reader = NeuralReader(folder)
            scores = evaluate_gold(reader, DEFAULT_DEV)
            ms = measure_latency(reader, PROJECT_DIR / "corpus", runs=args.runs) * 1000
            print(f"{form:<52} {scores['f1']:>6.4f} {scores['best_overall_f1']:>8.4f} {ms:>5.0f} "
                  f"{folder_size(folder) / 1e6:>6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
