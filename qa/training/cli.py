"""`python -m qa.training`: train, export, quantise, evaluate, and write the reader folder."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from .data import DEFAULT_DEV, DEFAULT_SEED, DEFAULT_TRAIN, DEV_DIR, PACKAGE_DIR, PROJECT_DIR, SYNTHETIC_KINDS
from .evaluation import evaluate_gold, evaluate_news, measure_latency
from .export import INT8_FORMS, export_onnx, folder_size, stage_reader, write_model_card
from .. import cpu
from ..checksums import write_checksums
from .loop import train_reader

log = logging.getLogger(__name__)
DEFAULT_OUT = PACKAGE_DIR / "models" / "reader"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qa train-reader", description="Train and export the extractive reader.")
    p.add_argument("--train", nargs="+", default=[str(f) for f in DEFAULT_TRAIN], metavar="FILE",
                   help="SQuAD JSON training files (questions de-duplicated by id)")
    p.add_argument("--dev", default=str(DEFAULT_DEV), metavar="FILE",
                   help="SQuAD v2 JSON dev file: evaluation and no-answer threshold only")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--stride", type=int, default=96, help="overlapping tokens between windows")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="train on N questions (quick probe)")
    p.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR", help="artifact folder")
    p.add_argument("--work", default=str(PROJECT_DIR / ".train"), metavar="DIR", help="scratch folder (checkpoint)")
    p.add_argument("--from-checkpoint", default=None, metavar="DIR", help="skip training; export this checkpoint")
    p.add_argument("--init", default=None, metavar="DIR",
                   help="start from this checkpoint of an earlier run (more epochs in a later session)")
    p.add_argument("--evaluate-only", action="store_true", help="score the artifact in --out and exit")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is several times faster than 2 when other work shares the 2 cores")
    p.add_argument("--news", default=str(DEV_DIR / "news_dev.jsonl"), metavar="FILE",
                   help="news dev questions (evaluation only)")
    p.add_argument("--synthetic-unanswerable", type=float, default=0.0, metavar="RATE",
                   help="add unanswerable variants of this share of the answerable questions")
    p.add_argument("--synthetic-kind", choices=SYNTHETIC_KINDS, default="mixed",
                   help="mixed: swapped words or a random other paragraph; elsewhere: the other paragraph of "
                        "the article most like the question that lacks the answer")
    p.add_argument("--unanswerable-weight", type=float, default=1.0, metavar="W",
                   help="weigh the loss of unanswerable questions' windows W times (1: as the others)")
    p.add_argument("--layer-decay", type=float, default=1.0, metavar="F",
                   help="learning rate x F per layer below the top (1: the same everywhere)")
    p.add_argument("--bf16", dest="bf16", action="store_true", default=None,
                   help="forward and backward under bfloat16 autocast (the default where the CPU has bfloat16 "
                        "arithmetic, AVX512-BF16 or AMX: about twice as fast there)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false",
                   help="train in float32 throughout (the default on other CPUs, where torch emulates bfloat16 "
                        "and autocast ran about 15 times slower)")
    p.add_argument("--adversarial", type=float, default=0.0, metavar="EPS",
                   help="also learn from each batch with its embeddings pushed EPS along the loss gradient (FGM; twice the time)")
    p.add_argument("--freeze-embeddings", action="store_true", help="keep the word embeddings fixed")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0, metavar="M",
                   help="save the whole training state every M minutes (for --resume)")
    p.add_argument("--resume", action="store_true",
                   help="carry on from the last saved state in --work (same data and settings)")
    p.add_argument("--date", default=None, help="date for the model card (default: today)")
    p.add_argument("--no-quantize", action="store_true")
    return p


def _print_scores(label: str, scores: dict[str, Any]) -> None:
    print(
        f"{label}: answerable EM {scores['em']:.4f} F1 {scores['f1']:.4f} "
        f"(at threshold {scores['threshold']:+.2f}: EM {scores['em_at_threshold']:.4f} "
        f"F1 {scores['f1_at_threshold']:.4f}); no-answer accuracy {scores['no_answer_accuracy']:.4f}; "
        f"overall v2 F1 {scores['overall_f1']:.4f} ({scores['answerable']} answerable, "
        f"{scores['unanswerable']} unanswerable)"
    )


def training_command(stats: dict[str, Any]) -> str:
    """The command that reproduces a training run (the defaults train on all DEFAULT_TRAIN files).

    A run started from an earlier one (`--init`) is the earlier run's command, then its own.
    """
    before = stats.get("init_stats")
    return (
        (f"{training_command(before)} --work {stats['init_work']} && " if before else "")
        + f"python -m qa.training --epochs {stats['epochs']:g} --lr {stats['lr']:g} "
        f"--batch-size {stats['batch_size']} --max-length {stats['max_length']} --stride {stats['stride']} "
        f"--seed {stats['seed']} --threads {stats.get('threads', 1)}"
        + (" --freeze-embeddings" if stats.get("freeze_embeddings") else "")
        + (f" --synthetic-unanswerable {stats['synthetic_unanswerable']:g}" if stats.get("synthetic_unanswerable") else "")
        + (f" --synthetic-kind {stats['synthetic_kind']}" if stats.get("synthetic_kind", "mixed") != "mixed" else "")
        + (f" --unanswerable-weight {stats['unanswerable_weight']:g}" if stats.get("unanswerable_weight", 1.0) != 1.0 else "")
        + (f" --layer-decay {stats['layer_decay']:g}" if stats.get("layer_decay", 1.0) != 1.0 else "")
        + (f" --adversarial {stats['adversarial']:g}" if stats.get("adversarial", 0.0) else "")
        + {True: " --bf16", False: " --no-bf16"}.get(stats.get("bf16"), "")
        + (f" --init {stats['init_work']}/checkpoint" if before else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from ..readers.neural import NeuralReader

    out = Path(args.out)
    corpus = PACKAGE_DIR.parent / "corpus"
    news = Path(args.news)
    if args.evaluate_only:
        reader = NeuralReader(out)
        trained = reader.config.get("training", {})
        if trained:
            print(f"trained in {trained.get('train_seconds', '?')} s: {training_command(trained)}")
        scores = evaluate_gold(reader, args.dev)
        _print_scores(f"{out} on {Path(args.dev).name}", scores)
        if news.is_file():
            print(f"news dev: {evaluate_news(reader, news, corpus)}")
        print(f"latency, 8 passages: {measure_latency(reader, corpus) * 1000:.0f} ms")
        return 0

    work = Path(args.work)
    if args.from_checkpoint:
        checkpoint = Path(args.from_checkpoint)
        stats_file = checkpoint / "train_stats.json"
        stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    else:
        checkpoint = work / "checkpoint"
        if args.bf16 is None:
            args.bf16 = cpu.has_native_bf16()
            log.info("bfloat16 autocast %s: this CPU %s bfloat16 arithmetic", "on" if args.bf16 else "off",
                     "has" if args.bf16 else "lacks")
        stats = train_reader(
            args.train, checkpoint, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
            max_length=args.max_length, stride=args.stride, seed=args.seed, limit=args.limit,
            threads=args.threads, freeze_embeddings=args.freeze_embeddings, synthetic=args.synthetic_unanswerable,
            synthetic_kind=args.synthetic_kind,
            layer_decay=args.layer_decay, adversarial=args.adversarial, bf16=args.bf16,
            unanswerable_weight=args.unanswerable_weight, checkpoint_minutes=args.checkpoint_minutes, resume=args.resume, base_model=args.init,
        )
    config: dict[str, Any] = {
        "max_length": stats.get("max_length", args.max_length),
        "stride": stats.get("stride", args.stride),
        "max_answer_tokens": 30,
        "threshold": 0.0,
        "n_best": 20,
        "support_weight": 1.0,
    }
    fp32_file = export_onnx(checkpoint, work / "onnx" / "model.fp32.onnx")
    fp32_dir = stage_reader(work / "fp32", fp32_file, checkpoint, config)
    fp32_scores = evaluate_gold(NeuralReader(fp32_dir), args.dev)
    _print_scores("float32", fp32_scores)
    chosen, chosen_scores, quantized = fp32_dir, fp32_scores, False
    if not args.no_quantize:
        # Fastest first: dynamic int8 (int8 matmuls) per tensor, then per channel; then per
        # channel with the feed-forward outputs in float32 matmuls; then weight-only int8 (float32
        # matmuls), which loses least. The first within 1 F1 point wins.
        for mode, quantize in INT8_FORMS.items():
            int8_file = work / "onnx" / f"model.int8.{mode}.onnx"
            quantize(fp32_file, int8_file)
            int8_dir = stage_reader(work / f"int8-{mode}", int8_file, checkpoint, config)
            int8_scores = evaluate_gold(NeuralReader(int8_dir), args.dev)
            _print_scores(f"int8 ({mode})", int8_scores)
            if fp32_scores["f1"] - int8_scores["f1"] <= 0.01:
                chosen, chosen_scores, quantized = int8_dir, int8_scores, True
                config["quantization"] = mode
                break
        if not quantized:
            log.warning("int8 loses more than 1 F1 point: keeping float32 (larger than 30 MB)")
    # The no-answer threshold: the highest that costs answerable dev questions <= 3 F1 points.
    config["threshold"] = round(float(chosen_scores["answer_threshold"]), 3)
    config["best_v2_threshold"] = round(float(chosen_scores["best_threshold"]), 3)
    reader = NeuralReader(chosen, threshold=config["threshold"])
    dev_scores = evaluate_gold(reader, args.dev)
    fp32_scores = evaluate_gold(NeuralReader(fp32_dir, threshold=config["threshold"]), args.dev)
    news_scores = evaluate_news(reader, news, corpus) if news.is_file() else {}
    latency = measure_latency(reader, corpus)
    config.update({
        "quantized": quantized,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "date": args.date or datetime.date.today().isoformat(),
        "training": stats,
        "scores": {"dev": dev_scores, "dev_fp32": fp32_scores, "news_dev": news_scores},
        "latency_ms": round(latency * 1000),
    })
    if out.exists():
        for f in out.iterdir():
            if f.is_file():
                f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for f in chosen.iterdir():
        if f.is_file() and f.name != "reader.json":
            shutil.copyfile(f, out / f.name)
    config["command"] = training_command(stats) if stats else "python -m qa.training " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    config["size_mb"] = 0.0
    (out / "reader.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    write_model_card(out, config, config["command"])
    config["size_mb"] = round(folder_size(out) / 1e6 + 0.05, 1)
    (out / "reader.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    write_model_card(out, config, config["command"])
    write_checksums(out)  # the reader is refused at load unless its files match these

    print(f"training time: {stats.get('train_seconds', 0):.0f} s ({stats.get('questions', '?')} questions, "
          f"{stats.get('windows', '?')} windows, {stats.get('epochs', '?')} epochs)")
    _print_scores("float32", fp32_scores)
    _print_scores("shipped " + ("int8" if quantized else "float32"), dev_scores)
    print(f"news dev (gold article chunks): {news_scores}")
    print(f"no-answer threshold: {config['threshold']:+.3f}; latency (8 passages): {config['latency_ms']} ms; "
          f"artifact {config['size_mb']} MB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
