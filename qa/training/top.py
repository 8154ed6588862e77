"""Retraining the reader's top transformer layers, with its span head, on what the int8 layers below compute.

The head refit (`qa.training.head`) showed that the top of the reader gains from being trained on
what the shipped int8 body computes, not on the float body it was trained beside. This stage goes
further down: it runs the int8 graph, as the service loads it (`qa.int8.session`), up to the
input of the top `--layers` layers, once for every training window, then trains those layers
(self-attention, feed-forward, both layer norms) and the span head together in float, from the
weights the graph holds, with the training loop's loss (cross-entropy of the start and the end):
AdamW, a warm-up over the first 5% of the steps then a linear decay, gradients clipped to norm 1;
no dropout unless `--dropout` (on the attention weights and each sublayer's output, as BERT and
`loop` place it). Optionally with synthetic unanswerable questions, as `python -m
qa.training` makes them. The layers' matmul weights and the head are quantized back per channel,
symmetric, as the export does, into the same graph: the embeddings, the layers below, the
tokenizer and the graph's structure stay as they are. The written graph's own loss on the
held-out windows must fall, or nothing is written. docs/measurements.md (fourteenth to sixteenth
sessions) tells what it changed and what was tried.

    python -m qa.training.top [--reader DIR] [--out DIR] [--layers 1] [--epochs 2] [--lr 5e-05]
                              [--synthetic-unanswerable RATE --synthetic-kind elsewhere] [--seed 14]
                              [--dropout 0]
                              [--work DIR] [--checkpoint-minutes 10] [--resume]

Measured on two AVX2 cores: one layer trains at about 75 windows a second (2 epochs of the 34,316
windows: 16 minutes, after 12 running the graph, as it ran before the graph was cut to what the
states need); three layers at about 22 (the shipped run, 42,095 windows with the synthetic ones,
1 epoch: 51 minutes in all); all six at 11.2 (1 epoch: 64 minutes, the states in 18 s); three
with `--dropout 0.1` at about 14 (58 minutes in all, 9 of them for the states). The
training state is saved every `--checkpoint-minutes` to `--work`/resume.pt; after a stop, the
same command with `--resume` runs the graph over the windows again and carries on from there.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import math
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import DEFAULT_SEED, DEFAULT_TRAIN, PROJECT_DIR, SYNTHETIC_KINDS
from .head import (DEFAULT_READER, _head, body_states, graph_session, like_length_batches, padded_windows, publish,
                   reader_windows, split, stacked)

log = logging.getLogger(__name__)

# A layer's matmuls and norms, by the names torch's export gives their nodes under the layer's prefix.
LINEARS = {"query": "attention/self/query", "key": "attention/self/key", "value": "attention/self/value",
           "attention_out": "attention/output/dense", "intermediate": "intermediate/dense", "out": "output/dense"}
NORMS = {"attention_norm": "attention/output/LayerNorm", "out_norm": "output/LayerNorm"}


def top_parts(model, layers: int = 1) -> dict:
    """Where the top `layers` layers and the head keep their numbers in an int8 export:
    `layers`, one dict per layer from the lowest, and `head`, with per linear the (node, input
    index) that reads its int8 weight, weight scale, weight zero point and bias, and per layer
    norm those of its weight and bias, and its epsilon; `input`, the tensor the lowest of them
    reads; `head_size`."""
    from onnx import numpy_helper

    nodes = list(model.graph.node)
    made_by = {out: node for node in nodes for out in node.output}
    by_name = {node.name: node for node in nodes}
    hidden, weight, scale, _, bias = _head(model)
    norm = made_by[hidden]  # the head reads the last layer's output LayerNorm
    last = re.fullmatch(r"(.*/layer\.)(\d+)/output/LayerNorm/.*", norm.name)
    if norm.op_type != "LayerNormalization" or not last:
        raise ValueError("the span head does not read a BERT layer's output LayerNorm")
    if not 1 <= layers <= int(last[2]) + 1:
        raise ValueError(f"layers must be between 1 and {int(last[2]) + 1}, not {layers}")
    prefixes = [f"{last[1]}{k}/" for k in range(int(last[2]) - layers + 1, int(last[2]) + 1)]

    def other(node, not_this: str) -> tuple[str, int]:
        """The input of `node` (a Mul or an Add of two) that is not `not_this`."""
        return node.name, next(k for k, name in enumerate(node.input) if name != not_this)

    def linear(matmul, scales, add) -> tuple:
        if matmul.op_type != "MatMulInteger":
            raise ValueError(f"{matmul.name} is not dynamically quantized int8 (MatMulInteger)")
        activation_scale = made_by[matmul.input[0]].output[1]  # DynamicQuantizeLinear's scale
        # Add(bias, Mul(Cast(MatMulInteger), scales)): the bias is the input that is not the product.
        product = next(name for name in add.input if name in made_by and made_by[name].op_type == "Mul"
                       and scales.output[0] in made_by[name].input)
        return (matmul.name, 1), other(scales, activation_scale), (matmul.name, 3), other(add, product)

    parts: dict = {"layers": [], "head": linear(
        next(n for n in nodes if n.op_type == "MatMulInteger" and n.input[1] == weight),
        next(n for n in nodes if n.op_type == "Mul" and scale in n.input),
        next(n for n in nodes if n.op_type == "Add" and bias in n.input))}
    for prefix in prefixes:
        layer = {key: linear(by_name[f"{prefix}{sub}/MatMul_quant"], by_name[f"{prefix}{sub}/MatMul_quant_scales_mul"],
                             by_name[f"{prefix}{sub}/Add"]) for key, sub in LINEARS.items()}
        for key, sub in NORMS.items():
            node = by_name[f"{prefix}{sub}/LayerNormalization"]
            epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            layer[key] = ((node.name, 1), (node.name, 2), epsilon)
        parts["layers"].append(layer)
    query_matmul = by_name[f"{prefixes[0]}{LINEARS['query']}/MatMul_quant"]
    parts["input"] = made_by[query_matmul.input[0]].input[0]  # DynamicQuantizeLinear's input: the layer below's output
    query_add = by_name[f"{prefixes[0]}{LINEARS['query']}/Add"]
    reshape = next(n for n in nodes if n.op_type == "Reshape" and n.input[0] == query_add.output[0])
    shape = made_by[reshape.input[1]]  # Concat(batch, tokens, -1, Constant(head size))
    parts["head_size"] = int(numpy_helper.to_array(made_by[shape.input[-1]].attribute[0].t).reshape(-1)[0])
    return parts


def _read(model, ref: tuple[str, int], values: dict) -> np.ndarray:
    """The initializer that input `ref` (node name, index) reads, through any Identity nodes."""
    node = next(n for n in model.graph.node if n.name == ref[0])
    name = node.input[ref[1]]
    made_by = {out: n for n in model.graph.node for out in n.output}
    while name not in values and made_by[name].op_type == "Identity":
        name = made_by[name].input[0]
    return values[name]


def _write(model, ref: tuple[str, int], array: np.ndarray) -> None:
    """Make input `ref` read `array`: in place when it reads an initializer nothing else reads
    (the shipped reader: every weight its own), else from a new initializer of its own (an
    export shares equal tensors, the zero biases of a fresh model, through Identity nodes)."""
    from onnx import numpy_helper

    node = next(n for n in model.graph.node if n.name == ref[0])
    name = node.input[ref[1]]
    readers = sum(name == other for n in model.graph.node for other in n.input)
    init = next((i for i in model.graph.initializer if i.name == name), None)
    if init is not None and readers == 1:
        if tuple(init.dims) != array.shape:
            raise ValueError(f"{name}: shape {tuple(init.dims)} in the graph, {array.shape} to write")
        init.CopyFrom(numpy_helper.from_array(array, name))
        return
    own = f"{node.name}/input.{ref[1]}"
    model.graph.initializer.append(numpy_helper.from_array(array, own))
    node.input[ref[1]] = own


def _torch_top():
    import torch

    functional = torch.nn.functional

    class Layer(torch.nn.Module):
        """A BERT layer as the export computes it (GELU by erf, a key mask); in training mode with
        `dropout` on the attention weights and on both sublayers' outputs, where BERT has it."""

        def __init__(self, hidden: int, intermediate: int, head_size: int, epsilons: tuple[float, float],
                     dropout: float = 0.0):
            super().__init__()
            self.head_size, self.dropout = head_size, dropout
            for key in ("query", "key", "value", "attention_out"):
                setattr(self, key, torch.nn.Linear(hidden, hidden))
            self.intermediate = torch.nn.Linear(hidden, intermediate)
            self.out = torch.nn.Linear(intermediate, hidden)
            self.attention_norm = torch.nn.LayerNorm(hidden, eps=epsilons[0])
            self.out_norm = torch.nn.LayerNorm(hidden, eps=epsilons[1])

        def forward(self, states, mask):
            batch, tokens, hidden = states.shape

            def heads(x):
                return x.view(batch, tokens, -1, self.head_size).transpose(1, 2)

            p = self.dropout if self.training else 0.0
            attended = functional.scaled_dot_product_attention(
                heads(self.query(states)), heads(self.key(states)), heads(self.value(states)), attn_mask=mask[:, None, None, :],
                dropout_p=p)
            attended = self.attention_out(attended.transpose(1, 2).reshape(batch, tokens, hidden))
            states = self.attention_norm(functional.dropout(attended, p) + states)
            return self.out_norm(functional.dropout(self.out(functional.gelu(self.intermediate(states))), p) + states)

    class Top(torch.nn.Module):
        """The top layers and the span head: start and end logits [batch, tokens, 2] from the
        output of the layer below them and the mask."""

        def __init__(self, layers: list, hidden: int):
            super().__init__()
            self.layers = torch.nn.ModuleList(layers)
            self.head = torch.nn.Linear(hidden, 2)

        def forward(self, states, mask):
            for layer in self.layers:
                states = layer(states, mask)
            return self.head(states)

    return Layer, Top


def load_top(model, layers: int = 1, dropout: float = 0.0):
    """The top `layers` layers and the head of an int8 `onnx.ModelProto` as a float torch module
    (the int8 weights times their scales), with `dropout` while it trains."""
    import torch
    from onnx import numpy_helper

    parts = top_parts(model, layers)
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    hidden, intermediate = _read(model, parts["layers"][0]["intermediate"][0], values).shape
    layer_class, top_class = _torch_top()
    top = top_class([layer_class(hidden, intermediate, parts["head_size"], (p["attention_norm"][2], p["out_norm"][2]),
                                 dropout) for p in parts["layers"]], hidden)

    def load_linear(linear, refs):
        weight, scale, zero, bias = (_read(model, ref, values) for ref in refs)
        floats = (weight.astype(np.float32) - zero.astype(np.float32)) * scale  # [in, out]
        linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(floats.T)))
        linear.bias.copy_(torch.from_numpy(bias.astype(np.float32)))

    with torch.no_grad():
        for layer, layer_parts in zip(top.layers, parts["layers"]):
            for key in LINEARS:
                load_linear(getattr(layer, key), layer_parts[key])
            for key in NORMS:
                norm = getattr(layer, key)
                norm.weight.copy_(torch.from_numpy(_read(model, layer_parts[key][0], values).astype(np.float32)))
                norm.bias.copy_(torch.from_numpy(_read(model, layer_parts[key][1], values).astype(np.float32)))
        load_linear(top.head, parts["head"])
    return top


def write_top(model_file: Path, out_file: Path, top) -> None:
    """`model_file` with its top layers' and head's numbers replaced by `top`'s (as many layers
    as `top` has), the weights quantized per channel, symmetric, as the export does; written to
    `out_file`."""
    import onnx

    model = onnx.load(str(model_file))
    parts = top_parts(model, len(top.layers))

    def write_linear(linear, refs):
        weight = linear.weight.detach().numpy().T.astype(np.float32)  # [in, out]
        scale = np.maximum(np.abs(weight).max(axis=0) / 127, np.finfo(np.float32).tiny).astype(np.float32)
        quantized = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        arrays = (quantized, scale, np.zeros(weight.shape[1], np.int8), linear.bias.detach().numpy().astype(np.float32))
        for ref, array in zip(refs, arrays):
            _write(model, ref, array)

    for layer, layer_parts in zip(top.layers, parts["layers"]):
        for key in LINEARS:
            write_linear(getattr(layer, key), layer_parts[key])
        for key in NORMS:
            norm = getattr(layer, key)
            _write(model, layer_parts[key][0], norm.weight.detach().numpy().astype(np.float32))
            _write(model, layer_parts[key][1], norm.bias.detach().numpy().astype(np.float32))
    write_linear(top.head, parts["head"])
    onnx.save(model, str(out_file))


def graph_loss(model_file: Path, features, which: Sequence[int], batch: int = 16) -> float:
    """The training loss of the int8 graph itself, as the service loads it, on the windows
    `which`: what the float layers trained on become once written back and quantized."""
    session = graph_session(model_file)
    order = sorted(which, key=lambda k: len(features[k][0]))
    total = 0.0
    for b in range(0, len(order), batch):
        idx = order[b : b + batch]
        start, end = session.run(["start_logits", "end_logits"], padded_windows(features, idx))
        for row, k in enumerate(idx):
            n = len(features[k][0])
            for logits, label in ((start[row, :n], features[k][2]), (end[row, :n], features[k][3])):
                peak = float(logits.max())
                # In Python floats: a NumPy float32 sum would not go into reader.json.
                total += (float(np.log(np.exp(logits - peak).sum())) + peak - float(logits[label])) / 2
    return round(total / len(order), 4)


def fit_top(top, states: Sequence[np.ndarray], labels: Sequence[tuple[int, int]], epochs: float = 2.0,
            lr: float = 5e-5, seed: int = DEFAULT_SEED, batch: int = 32, *, checkpoint: Path | None = None,
            checkpoint_minutes: float = 10.0, resume: bool = False, run: str = "") -> dict:
    """Train `top` in place on the layer below's outputs `states` and their (start, end) labels:
    `epochs` passes over the windows `split` leaves, in batches of like length; the held-out
    ones are scored in float before and after. Returns the two losses and the seconds the runs
    this one resumed spent training (0 without a resume).

    Dropout is what `top`'s layers were made with (`load_top`). Unlike `loop`, the batches are
    cut once: every epoch shuffles the same batches.

    With `checkpoint` (a file), the whole training state (the layers, the optimizer, the
    schedule, the step, the loss before, torch's random state) is saved there every
    `checkpoint_minutes` and once trained, written aside and renamed, so a stop at any moment
    leaves the last whole state. With `resume`, a run carries on from it: the batches are drawn
    again from `seed` and those done are skipped, so on the same machine and threads the run ends
    as an uninterrupted one would (elsewhere, float kernels may round otherwise; dropout draws on
    the random state restored). `run` names the data (the caller's fingerprint); a checkpoint of
    another run or other settings is refused. The caller removes the checkpoint once it has what
    it trained for."""
    import torch

    functional = torch.nn.functional
    torch.manual_seed(seed)
    rng = random.Random(seed)
    held, train = split(len(states), rng)  # the head refit's split for the same seed and windows

    def batches(which):
        return like_length_batches(states, which, batch)

    def loss(chunk):
        h, mask = stacked(states, chunk)
        mask_t = torch.from_numpy(mask)
        logits = top(torch.from_numpy(h), mask_t).masked_fill(~mask_t[:, :, None], -1e4)
        starts, ends = (torch.tensor([labels[k][i] for k in chunk]) for i in (0, 1))
        return (functional.cross_entropy(logits[:, :, 0], starts) + functional.cross_entropy(logits[:, :, 1], ends)) / 2

    def held_loss() -> float:
        top.eval()
        with torch.no_grad():
            total = sum(float(loss(chunk)) * len(chunk) for chunk in batches(held))
        top.train()
        return round(total / len(held), 4)

    steps = math.ceil(len(train) / batch * epochs)
    warm = max(1, steps // 20)
    optimizer = torch.optim.AdamW(top.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warm, max(0.0, (steps - step) / max(1, steps - warm))))
    fingerprint = {"run": run, "windows": len(states), "steps": steps, "lr": lr, "seed": seed, "batch": batch,
                   "dropout": top.layers[0].dropout}
    step, done_seconds, running = 0, 0.0, None
    if resume and checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint)
        if state["fingerprint"] != fingerprint:
            raise RuntimeError(f"{checkpoint} is of another run ({state['fingerprint']}; this one {fingerprint})")
        top.load_state_dict(state["top"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, done_seconds, before, running = state["step"], state["seconds"], state["before"], state["running"]
        torch.set_rng_state(state["random"])
        log.info("top: resumed from %s at step %d/%d", checkpoint, step, steps)
    else:
        if resume:
            log.warning("top: no checkpoint %s: starting from the beginning", checkpoint)
        before = held_loss()
    began = last_save = time.monotonic()
    resumed_at = step

    def save() -> None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        partial = checkpoint.with_name(checkpoint.name + ".partial")
        torch.save({"fingerprint": fingerprint, "top": top.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "step": step, "before": before, "running": running,
                    "random": torch.get_rng_state(), "seconds": done_seconds + time.monotonic() - began}, partial)
        partial.replace(checkpoint)
        log.info("top: saved %s at step %d/%d", checkpoint, step, steps)

    def order():
        """Every step's batch, in the order training takes them: each epoch shuffles the batches."""
        while True:
            chunks = batches(train)
            rng.shuffle(chunks)
            yield from chunks

    for index, chunk in zip(range(steps), order()):
        if index < step:  # done before the resume
            continue
        value = loss(chunk)
        optimizer.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(top.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        seen = float(value.detach())
        running = seen if running is None else 0.98 * running + 0.02 * seen
        if step % 200 == 0 or step == steps:
            log.info("top: step %d/%d, loss %.4f, %.1f windows/s", step, steps, running,
                     (step - resumed_at) * batch / max(1e-9, time.monotonic() - began))
        if checkpoint is not None and step < steps and time.monotonic() - last_save >= checkpoint_minutes * 60:
            save()
            last_save = time.monotonic()
    if checkpoint is not None and step > resumed_at:
        save()  # trained: a stop while the caller scores and writes it does not lose the run
    after = held_loss()
    log.info("top: held-out loss %.4f (%.4f before)", after, before)
    return {"held_out_loss_before": before, "held_out_loss_after": after,
            "resumed_seconds": done_seconds}


def _forget(checkpoint: Path) -> None:
    """The run is written (or refused): nothing is left to resume."""
    for file in (checkpoint, checkpoint.with_name(checkpoint.name + ".partial")):
        file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    import onnx

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reader", default=str(DEFAULT_READER), metavar="DIR", help="the int8 reader whose top is refitted")
    p.add_argument("--out", default=str(DEFAULT_READER), metavar="DIR", help="where the refitted reader goes")
    p.add_argument("--train", nargs="+", default=[str(f) for f in DEFAULT_TRAIN], metavar="FILE")
    p.add_argument("--layers", type=int, default=1, help="how many of the top layers to retrain (with the head)")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=14)  # the shipped run's seed
    p.add_argument("--synthetic-unanswerable", type=float, default=0.0, metavar="RATE",
                   help="add unanswerable variants of this share of the answerable questions (as python -m qa.training)")
    p.add_argument("--synthetic-kind", choices=SYNTHETIC_KINDS, default="elsewhere")
    p.add_argument("--dropout", type=float, default=0.0, metavar="P",
                   help="dropout on the retrained layers' attention weights and sublayer outputs (0: none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default=str(PROJECT_DIR / ".train" / "top"), metavar="DIR",
                   help="scratch folder (the checkpoint)")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0, metavar="M",
                   help="save the whole training state every M minutes (for --resume)")
    p.add_argument("--resume", action="store_true",
                   help="carry on from the last saved state in --work (same reader, data and settings)")
    p.add_argument("--date", default=None, help="date for the model card (default: today)")
    args = p.parse_args(argv)
    if not 0.0 <= args.dropout < 1.0:  # else it would fail only at the first step, after the states
        p.error(f"--dropout must be at least 0 and below 1, not {args.dropout:g}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    reader, out = Path(args.reader), Path(args.out)
    config = json.loads((reader / "reader.json").read_text(encoding="utf-8"))
    if config.get("training", {}).get("top_refit"):
        print(f"{reader}: its top layers were refitted already", file=sys.stderr)
        return 2
    began = time.monotonic()
    train = config["training"]
    features, made = reader_windows(config, args.train, args.synthetic_unanswerable, args.synthetic_kind, args.seed)
    # A checkpoint belongs to this reader's graph, these layers, this dropout and these windows
    # (not to how their files are spelt); a resume runs the graph over them again, minutes, not
    # the run.
    digest = hashlib.sha256((reader / "model.onnx").read_bytes())
    digest.update(json.dumps([args.layers, args.dropout, [[list(f[0]), list(f[1]), f[2], f[3]] for f in features]]).encode())
    run, checkpoint = digest.hexdigest(), Path(args.work) / "resume.pt"
    if args.resume and checkpoint.is_file() and torch.load(checkpoint)["fingerprint"]["run"] != run:
        print(f"{checkpoint}: a checkpoint of another reader, other layers, another dropout or other windows",
              file=sys.stderr)
        return 2
    model = onnx.load(str(reader / "model.onnx"))
    states = body_states(reader / "model.onnx", features, tensor=top_parts(model, args.layers)["input"])
    top = load_top(model, args.layers, args.dropout)
    losses = fit_top(top, states, [(f[2], f[3]) for f in features], args.epochs, args.lr, args.seed, args.batch_size,
                     checkpoint=checkpoint, checkpoint_minutes=args.checkpoint_minutes, resume=args.resume, run=run)
    earlier = losses.pop("resumed_seconds")  # the training time of the runs this one carried on
    del states
    # The float layers are not what ships: the written graph quantizes their weights and, per
    # run, their inputs. Its own loss on the held-out windows decides.
    held = split(len(features), random.Random(args.seed))[0]
    with tempfile.TemporaryDirectory() as scratch:
        trial = Path(scratch) / "model.onnx"
        write_top(reader / "model.onnx", trial, top)
        losses["held_out_int8_before"] = graph_loss(reader / "model.onnx", features, held)
        losses["held_out_int8_after"] = graph_loss(trial, features, held)
        log.info("top: the int8 graph's held-out loss %.4f (%.4f before)", losses["held_out_int8_after"],
                 losses["held_out_int8_before"])
        if losses["held_out_int8_after"] >= losses["held_out_int8_before"]:
            print(f"the retrained int8 graph's held-out loss did not fall ({losses['held_out_int8_before']} -> "
                  f"{losses['held_out_int8_after']}): nothing written", file=sys.stderr)
            _forget(checkpoint)
            return 1
        model_bytes = trial.read_bytes()
    seconds = round(time.monotonic() - began + earlier, 1)
    train["top_refit"] = {"layers": args.layers, "synthetic_unanswerable": args.synthetic_unanswerable,
                          "synthetic_kind": args.synthetic_kind, "synthetic_questions": made, "dropout": args.dropout,
                          "epochs": args.epochs,
                          "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                          "windows": len(features), "seconds": seconds, **losses}
    command = f"python -m qa.training.top --layers {args.layers} --epochs {args.epochs:g} --lr {args.lr:g} --seed {args.seed}"
    if args.batch_size != 32:
        command += f" --batch-size {args.batch_size}"
    if args.dropout:
        command += f" --dropout {args.dropout:g}"
    if args.train != [str(f) for f in DEFAULT_TRAIN]:
        command += " --train " + " ".join(args.train)
    if made:
        command += f" --synthetic-unanswerable {args.synthetic_unanswerable:g} --synthetic-kind {args.synthetic_kind}"
    config["command"] = f"{config['command']} && {command}"
    config["date"] = args.date or datetime.date.today().isoformat()
    dev = publish(reader, out, config, lambda target: target.write_bytes(model_bytes))
    _forget(checkpoint)
    print(f"top {args.layers} layer(s) retrained in {seconds:.0f} s; held-out training loss of the int8 graph "
          f"{losses['held_out_int8_before']} -> {losses['held_out_int8_after']}; gold answerable F1 {dev['f1']}, "
          f"v2 overall {dev['overall_f1']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
