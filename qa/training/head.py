"""Refitting the span head of a quantized reader on what its int8 body computes.

The span head is one linear layer (384 -> 2: a start and an end score per token, `[CLS]` for "no
answer"). It was trained for one epoch beside a body that kept changing under it, and the service
runs that body in int8. Given the body's final hidden states, the best head is a convex problem:
this stage runs the shipped int8 body (as the service loads it, `qa.int8.session`) over every
training window once, then fits the head to them with the training loop's own loss
(cross-entropy of the start and the end), starting from the head it has. The body, the
tokenizer and the graph stay as they are; only the head's numbers change, quantized per channel
as the export quantizes them. docs/measurements.md (thirteenth session) tells what it changed.

    python -m qa.training.head [--reader DIR] [--out DIR] [--epochs 3] [--lr 0.001] [--seed 14]

About 13 minutes on two cores for the 34,316 windows, most of it running the body.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import DEFAULT_DEV, DEFAULT_SEED, DEFAULT_TRAIN, DEV_DIR, PROJECT_DIR, base_model_path
from .windows import build_features, load_tokenizer, usable_examples

log = logging.getLogger(__name__)
DEFAULT_READER = PROJECT_DIR / "qa" / "models" / "reader"


def _head(model):
    """The head's parts in an int8 export: (hidden state name, weight, weight scale, weight zero
    point, bias) initializer names, found from the graph's structure, not by name."""
    nodes = list(model.graph.node)
    made_by = {out: node for node in nodes for out in node.output}
    inits = {init.name for init in model.graph.initializer}
    start = made_by[model.graph.output[0].name]  # start_logits <- Squeeze <- Split <- Add(bias)
    while start.op_type in ("Squeeze", "Split", "Reshape"):
        start = made_by[start.input[0]]
    if start.op_type != "Add":
        raise ValueError("the span head is not MatMul + Add")
    bias = next(name for name in start.input if name in inits)
    scaled = made_by[next(name for name in start.input if name not in inits)]  # Mul(Cast(MatMulInteger), scales)
    matmul = made_by[made_by[scaled.input[0]].input[0]]
    scales = made_by[scaled.input[1]]
    if matmul.op_type != "MatMulInteger" or scales.op_type != "Mul":
        raise ValueError("the span head is not dynamically quantized int8 (MatMulInteger)")
    hidden = made_by[matmul.input[0]].input[0]  # DynamicQuantizeLinear's input
    weight_scale = next(name for name in scales.input if name in inits)
    return hidden, matmul.input[1], weight_scale, matmul.input[3], bias


def padded_windows(features, idx: Sequence[int]) -> dict[str, np.ndarray]:
    """The graph's inputs for the windows `idx` of `features`, padded to the longest."""
    length = max(len(features[k][0]) for k in idx)
    ids, types, mask = (np.zeros((len(idx), length), np.int64) for _ in range(3))
    for row, k in enumerate(idx):
        n = len(features[k][0])
        ids[row, :n], types[row, :n], mask[row, :n] = features[k][0], features[k][1], 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def split(count: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """`count` windows in `rng`'s order, cut into the 5% kept back to watch the loss (at least
    one) and the rest. Windows of one paragraph fall on both sides, and all were the reader's
    training windows: the held-out loss shows the fit, the dev sets judge it."""
    ids = list(range(count))
    rng.shuffle(ids)
    cut = max(1, count // 20)
    return ids[:cut], ids[cut:]


def like_length_batches(states: Sequence[np.ndarray], which: Sequence[int], batch: int) -> list[list[int]]:
    """`which` in batches of `batch` windows of like length (by their states' length)."""
    which = sorted(which, key=lambda k: len(states[k]))
    return [which[i : i + batch] for i in range(0, len(which), batch)]


def stacked(states: Sequence[np.ndarray], chunk: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The states of the windows `chunk` as one float32 array [windows, tokens, hidden], padded
    with zeros, and its mask (True on the windows' tokens)."""
    length = max(len(states[k]) for k in chunk)
    h = np.zeros((len(chunk), length, states[chunk[0]].shape[1]), np.float32)
    mask = np.zeros((len(chunk), length), bool)
    for row, k in enumerate(chunk):
        h[row, : len(states[k])], mask[row, : len(states[k])] = states[k], True
    return h, mask


def graph_session(model):
    """An ONNX Runtime session of an int8 reader (a path or an `onnx.ModelProto`), loaded as the
    service loads it, on its two threads."""
    import onnxruntime as ort

    from .. import int8

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2  # as the service's reader runs
    options.log_severity_level = 3
    return int8.session(model, options)


def reader_windows(config: dict, train_files, synthetic: float = 0.0, kind: str = "elsewhere",
                   seed: int = DEFAULT_SEED) -> tuple[list, int]:
    """The training windows of a reader's `config` (its max_length, stride and longest answer)
    over `train_files`, with those of `synthetic` unanswerable variants of the answerable
    questions (`data.synthetic_unanswerable`); and how many such questions were made."""
    from .data import synthetic_unanswerable

    tokenizer = load_tokenizer(base_model_path())
    train = config["training"]
    examples, _ = usable_examples(train_files, tokenizer, train.get("max_answer_tokens", 30))
    made = synthetic_unanswerable(examples, synthetic, seed, kind) if synthetic > 0 else []
    features = build_features(examples + made, tokenizer, train["max_length"], train["stride"])
    log.info("%d questions (%d synthetic unanswerable), %d windows", len(examples) + len(made), len(made), len(features))
    return features, len(made)


def _only_what_makes(model, tensor: str):
    """`model` with only the nodes and initializers that `tensor` needs. ONNX Runtime runs every
    node of a graph, whatever its outputs: the embeddings' output alone took as long as the whole
    graph (measured on the shipped reader, the other core busy: 13 windows a second either way;
    cut to what it needs, 1,200). A graph with subgraphs (If, Loop), whose bodies read names no
    node input shows, is left whole."""
    from onnx import AttributeProto

    nodes = list(model.graph.node)
    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for node in nodes for a in node.attribute):
        return model
    made_by = {out: k for k, node in enumerate(nodes) for out in node.output}
    needed, kept, todo = set(), set(), [tensor]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        if name in made_by and made_by[name] not in kept:
            kept.add(made_by[name])
            todo.extend(name for name in nodes[made_by[name]].input if name)
    initializers = [init for init in model.graph.initializer if init.name in needed]
    del model.graph.node[:], model.graph.initializer[:]
    model.graph.node.extend(nodes[k] for k in sorted(kept))
    model.graph.initializer.extend(initializers)
    return model


def body_states(model_file: Path, features, batch: int = 16, tensor: str | None = None) -> list[np.ndarray]:
    """Each window's final hidden states (float16, [tokens, hidden]) from the int8 body, or those
    of the graph's `tensor` (a layer's output, say), run as the service runs it, `batch` windows
    of like length at a time."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_file))
    hidden = tensor or _head(model)[0]
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(hidden, TensorProto.FLOAT, None))
    session = graph_session(_only_what_makes(model, hidden))
    order = sorted(range(len(features)), key=lambda k: len(features[k][0]))
    states: list[np.ndarray] = [np.empty(0)] * len(features)
    began = time.monotonic()
    for b in range(0, len(order), batch):
        idx = order[b : b + batch]
        out = session.run([hidden], padded_windows(features, idx))[0]
        for row, k in enumerate(idx):
            states[k] = out[row, : len(features[k][0])].astype(np.float16)
        if (b // batch) % 250 == 0:
            done = b + len(idx)
            log.info("body: %d/%d windows, %.1f/s", done, len(order), done / max(1e-9, time.monotonic() - began))
    return states


def fit_head(states: Sequence[np.ndarray], labels: Sequence[tuple[int, int]], weight: np.ndarray, bias: np.ndarray,
             epochs: int = 3, lr: float = 1e-3, seed: int = DEFAULT_SEED, batch: int = 128):
    """The head (weight [384, 2], bias [2]) fitted to `states` and their (start, end) labels from
    the given one, Adam, `epochs` passes over 95% of the windows in batches of like length; the
    other 5% are scored before and after (returned as the third item)."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    w = torch.tensor(weight, dtype=torch.float32, requires_grad=True)
    b = torch.tensor(bias, dtype=torch.float32, requires_grad=True)
    held, train = split(len(states), rng)

    def batches(which):
        return like_length_batches(states, which, batch)

    def losses(chunk):
        h, mask = stacked(states, chunk)
        logits = (torch.from_numpy(h) @ w + b).masked_fill(~torch.from_numpy(mask)[:, :, None], -1e4)
        starts = torch.tensor([labels[k][0] for k in chunk])
        ends = torch.tensor([labels[k][1] for k in chunk])
        ce = torch.nn.functional.cross_entropy
        return (ce(logits[:, :, 0], starts, reduction="none") + ce(logits[:, :, 1], ends, reduction="none")) / 2

    def held_loss() -> float:
        with torch.no_grad():
            return round(float(torch.cat([losses(c) for c in batches(held)]).mean()), 4)

    before = held_loss()
    optimizer = torch.optim.Adam([w, b], lr=lr)
    for epoch in range(epochs):
        chunks = batches(train)
        rng.shuffle(chunks)
        for chunk in chunks:
            optimizer.zero_grad()
            losses(chunk).mean().backward()
            optimizer.step()
        log.info("head: epoch %d, held-out loss %.4f (%.4f before)", epoch + 1, held_loss(), before)
    return w.detach().numpy(), b.detach().numpy(), {"held_out_loss_before": before, "held_out_loss_after": held_loss()}


def write_head(model_file: Path, out_file: Path, weight: np.ndarray, bias: np.ndarray) -> None:
    """`model_file` with the head's weight (quantized per channel, symmetric, as the export does)
    and bias replaced, written to `out_file`."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_file))
    _, w_name, scale_name, zero_name, bias_name = _head(model)
    scale = (np.abs(weight).max(axis=0) / 127).astype(np.float32)
    quantized = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    values = {w_name: quantized, scale_name: scale, zero_name: np.zeros(weight.shape[1], np.int8),
              bias_name: bias.astype(np.float32)}
    for init in model.graph.initializer:
        if init.name in values:
            init.CopyFrom(numpy_helper.from_array(values[init.name], init.name))
    onnx.save(model, str(out_file))


def current_head(model_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """The head's weight and bias as the int8 model holds them, in float."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_file))
    _, w_name, scale_name, zero_name, bias_name = _head(model)
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    weight = (inits[w_name].astype(np.float32) - inits[zero_name].astype(np.float32)) * inits[scale_name]
    return weight.astype(np.float32), inits[bias_name].astype(np.float32)


def publish(reader: Path, out: Path, config: dict, write_model) -> dict:
    """The refitted reader in `out`: `reader`'s files, the model written by `write_model(path)`,
    its checksums, its gold-paragraph and news_dev scores in `config` (returned: the gold ones),
    reader.json and the model card."""
    from ..checksums import write_checksums
    from ..readers.neural import NeuralReader
    from .evaluation import evaluate_gold, evaluate_news
    from .export import folder_size, write_model_card

    if out.resolve() != reader.resolve():
        shutil.copytree(reader, out, dirs_exist_ok=True)
    write_model(out / "model.onnx")
    write_checksums(out)  # the model files only (checksums.READER_FILES): the reader is refused without them
    refitted = NeuralReader(out)
    dev = evaluate_gold(refitted, DEFAULT_DEV)
    config["scores"]["dev"] = dev
    config["scores"]["news_dev"] = evaluate_news(refitted, DEV_DIR / "news_dev.jsonl", PROJECT_DIR / "corpus")
    config["best_v2_threshold"] = dev["best_threshold"]
    (out / "reader.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    config["size_mb"] = round(folder_size(out) / 1e6 + 0.05, 1)
    (out / "reader.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    write_model_card(out, config, config["command"])
    return dev


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reader", default=str(DEFAULT_READER), metavar="DIR", help="the int8 reader whose head is refitted")
    p.add_argument("--out", default=str(DEFAULT_READER), metavar="DIR", help="where the refitted reader goes")
    p.add_argument("--train", nargs="+", default=[str(f) for f in DEFAULT_TRAIN], metavar="FILE")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=14)  # the shipped run's seed
    p.add_argument("--date", default=None, help="date for the model card (default: today)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    reader, out = Path(args.reader), Path(args.out)
    config = json.loads((reader / "reader.json").read_text(encoding="utf-8"))
    if config.get("training", {}).get("head_refit"):
        print(f"{reader}: its head was refitted already", file=sys.stderr)
        return 2
    began = time.monotonic()
    train = config["training"]
    features, _ = reader_windows(config, args.train)
    states = body_states(reader / "model.onnx", features)
    weight, bias = current_head(reader / "model.onnx")
    weight, bias, losses = fit_head(states, [(f[2], f[3]) for f in features], weight, bias, args.epochs, args.lr, args.seed)
    seconds = round(time.monotonic() - began, 1)
    train["head_refit"] = {"epochs": args.epochs, "lr": args.lr, "seed": args.seed, "windows": len(features),
                           "seconds": seconds, **losses}
    command = f"python -m qa.training.head --epochs {args.epochs} --lr {args.lr:g} --seed {args.seed}"
    config["command"] = f"{config['command']} && {command}"
    config["date"] = args.date or datetime.date.today().isoformat()
    dev = publish(reader, out, config, lambda target: write_head(reader / "model.onnx", target, weight, bias))
    print(f"head refitted in {seconds:.0f} s; held-out training loss {losses['held_out_loss_before']} -> "
          f"{losses['held_out_loss_after']}; gold answerable F1 {dev['f1']}, v2 overall {dev['overall_f1']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
