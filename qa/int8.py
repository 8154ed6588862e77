"""Loading an int8 ONNX model so that it computes the same numbers on every x86 CPU.

The shipped encoder and reader are dynamically quantized: activations become uint8 per call and
the weights are int8 (`MatMulInteger`, u8 x s8). On x86 CPUs without VNNI (AVX2 or AVX-512 alone,
such as AMD EPYC before Zen 4), ONNX Runtime multiplies u8 x s8 with `vpmaddubsw`, which adds
pairs of products into 16 bits and saturates: a large activation times a large weight is
clipped. With VNNI (`vpdpbusd`) the sums are exact. So the same model gave other answers on
other machines: measured on an AVX2-only EPYC, the shipped reader's answerable F1 on the SQuAD
dev part's gold paragraphs was 0.804 against 0.808 where it was trained, and the span model's
news_dev EM 0.818 against 0.864 (docs/measurements.md).

The cure is exact, not an approximation: a weight w in [-127, 127] with zero point 0 is the same
number as w + 128 in uint8 with zero point 128, and ONNX Runtime multiplies u8 x u8 by widening
to 16 bits first, which never saturates. So, where the CPU lacks VNNI, the weights are shifted
when the model is loaded: the model file (and its checksum, and the identity an index records)
stays as it is, and the products are those of a VNNI machine, bit for bit in the integer part.
The price, measured on an AVX2 machine: single-threaded u8 x u8 matmuls took 12% to 23% longer,
asking took 2% to 6% longer, and loading takes 70 to 210 ms more per model, because the graph is
rewritten in memory (docs/measurements.md; bench/int8_cpu.py runs both forms).

Loading also drops what a model spends time on without changing a number: torch's export of
scaled-dot-product attention guards each softmax with `Where(IsNaN(p), 0, p)`, for a row whose
keys are all masked. No row the service runs is: every window and every text starts with `[CLS]`,
which is never masked (and the readers and the encoder never run an empty row: one all-masked row
would turn the whole run to NaN, since an int8 model takes one activation scale per run). The
guard is an elementwise pass over every attention matrix, and it took 12% of the span model's
time on an AVX2 machine (docs/measurements.md); the logits without it are the same, bit for bit
(tests/test_int8.py). So every model is now loaded through `onnx` and rewritten in memory, on
every CPU: that costs 35 to 50 ms more per model where the weights need no change (a review's
probe: reader 71 to 119 ms, encoder 68 to 107 ms).
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import cpu

log = logging.getLogger(__name__)


def unsigned_weights(model) -> int:
    """Turn the int8 weights of every `MatMulInteger` in an `onnx.ModelProto` into the same
    numbers in uint8 (+128, zero point +128), in place; returns how many tensors changed."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    # A tensor that another node also reads (an embedding table through DequantizeLinear, say)
    # must keep its meaning there: only the weights and zero points of MatMulInteger are shifted.
    elsewhere = {name for node in model.graph.node for k, name in enumerate(node.input)
                 if node.op_type != "MatMulInteger" or k not in (1, 3)}
    changed = set()
    for node in model.graph.node:
        if node.op_type != "MatMulInteger" or len(node.input) < 2:
            continue
        weight = inits.get(node.input[1])
        # Without a zero point of its own (0 by default) the shifted weight would need one: left as is.
        zero = inits.get(node.input[3]) if len(node.input) > 3 else None
        if weight is None or zero is None or weight.data_type != TensorProto.INT8 or {weight.name, zero.name} & elsewhere:
            continue
        for tensor in (weight, zero):
            if tensor.name not in changed and tensor.data_type == TensorProto.INT8:
                shifted = numpy_helper.to_array(tensor).astype(np.int16) + 128
                tensor.CopyFrom(numpy_helper.from_array(shifted.astype(np.uint8), tensor.name))
                changed.add(tensor.name)
    return len(changed)


def drop_nan_guards(model) -> int:
    """Remove, in place, every `Where(IsNaN(p), 0, p)` whose `p` is a `Softmax` output from an
    `onnx.ModelProto`, its readers reading `p` itself; returns how many were removed.

    Exact for every input in which each sequence attends to at least one token (the module's
    docstring); a model without such guards is left as it is."""
    import onnx
    from onnx import numpy_helper

    nodes = model.graph.node
    if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for node in nodes for attr in node.attribute):
        return 0  # subgraphs (If, Loop) read names this pass does not follow: left as it is
    made_by = {out: node for node in nodes for out in node.output}
    constants = {init.name: init for init in model.graph.initializer}
    constants.update({node.output[0]: node.attribute[0].t for node in nodes
                      if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"})
    outputs = {out.name for out in model.graph.output}  # a guard that makes one keeps its name
    replace, dropped = {}, []
    for node in nodes:
        if node.op_type != "Where" or len(node.input) != 3 or node.output[0] in outputs:
            continue
        test, _, probs = (made_by.get(name) for name in node.input)
        zero = constants.get(node.input[1])
        if (test is None or test.op_type != "IsNaN" or test.input[0] != node.input[2]
                or probs is None or probs.op_type != "Softmax" or zero is None
                or numpy_helper.to_array(zero).any()):
            continue
        replace[node.output[0]] = node.input[2]
        dropped.append(node)
        # The IsNaN goes too, unless something else reads it.
        if sum(test.output[0] in other.input for other in nodes) == 1 and test.output[0] not in outputs:
            dropped.append(test)
    if not replace:
        return 0
    for node in dropped:
        nodes.remove(node)
    for node in nodes:
        for k, name in enumerate(node.input):
            if name in replace:
                node.input[k] = replace[name]
    # The zeros the guards filled with, where nothing else reads them (else ONNX Runtime warns).
    fills = {node.input[1] for node in dropped if node.op_type == "Where"}
    read = {name for node in nodes for name in node.input} | outputs | {i.name for i in model.graph.input}
    for name in fills - read:
        for node in [n for n in nodes if n.op_type == "Constant" and name in n.output]:
            nodes.remove(node)
        for init in [i for i in model.graph.initializer if i.name == name]:
            model.graph.initializer.remove(init)
    return len(replace)


def session(model, options, exact: bool | None = None):
    """An `onnxruntime.InferenceSession` on the CPU for `model` (a file, or an `onnx.ModelProto`,
    which is rewritten in place), with its attention NaN guards dropped and its int8 weights made
    unsigned unless this CPU sums u8 x s8 exactly (`exact`: None asks the CPU)."""
    import onnx
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if exact is None:
        exact = cpu.sums_int8_exactly()
    name = model.graph.name if isinstance(model, onnx.ModelProto) else str(model)
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    guards = drop_nan_guards(model)
    count = 0 if exact else unsigned_weights(model)
    if count:
        log.info("%s: %d int8 weight tensors made unsigned (this CPU has no VNNI; the sums stay exact)",
                 name, count)
    log.debug("%s: %d attention NaN guards dropped", name, guards)
    return ort.InferenceSession(model.SerializeToString(), options, providers=providers)
