"""Refitting the span head on the int8 body's hidden states (qa.training.head), on a tiny
checkpoint exported and quantized as the shipped reader is (real ONNX Runtime, real torch)."""

import numpy as np
import onnxruntime as ort

from qa import int8
from qa.training import export_onnx, quantize_onnx
from qa.training.head import body_states, current_head, fit_head, write_head

from .conftest import tiny_qa_checkpoint


def _windows(count=200, seed=0):
    """Windows whose answer is where one marker token stands (at [CLS], "no answer", when the
    marker is missing): a head can learn that from the hidden states."""
    rng = np.random.default_rng(seed)
    features = []
    for _ in range(count):
        n = int(rng.integers(8, 24))
        ids = [101] + [int(t) for t in rng.integers(1000, 2000, n - 2)] + [102]
        start = int(rng.integers(1, n - 1)) if rng.random() < 0.8 else 0
        if start:
            ids[start] = 2500
        features.append((ids, [0] * n, start, start, start == 0))
    return features


def _logits(model_file, features):
    session = int8.session(model_file, ort.SessionOptions())
    out = []
    for ids, types, *_ in features:
        feed = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64),
                "token_type_ids": np.array([types])}
        start, end = session.run(None, feed)
        out.append(np.stack([start[0], end[0]], axis=1))
    return out


def test_the_refitted_head_lowers_the_loss_and_only_the_head_changes(tmp_path):
    fp32 = export_onnx(tiny_qa_checkpoint(tmp_path / "checkpoint"), tmp_path / "fp32.onnx")
    model = quantize_onnx(fp32, tmp_path / "int8.onnx", per_channel=True)
    features = _windows()
    states = body_states(model, features, batch=1)
    weight, bias = current_head(model)
    # The states and the head it has give the model's own logits (up to the head's int8 rounding).
    for state, logits in zip(states, _logits(model, features)):
        np.testing.assert_allclose(state.astype(np.float32) @ weight + bias, logits, atol=0.05)

    labels = [(f[2], f[3]) for f in features]
    new_weight, new_bias, losses = fit_head(states, labels, weight, bias, epochs=20, lr=0.01, seed=1, batch=16)
    assert losses["held_out_loss_after"] < losses["held_out_loss_before"]
    write_head(model, tmp_path / "refitted.onnx", new_weight, new_bias)
    # The new file computes the new head over the same body: the states are unchanged.
    again = body_states(tmp_path / "refitted.onnx", features, batch=1)
    assert all(np.array_equal(a, b) for a, b in zip(states, again))
    for state, logits in zip(states, _logits(tmp_path / "refitted.onnx", features)):
        # Within the int8 rounding of the head and of its input, which grows with the weights.
        np.testing.assert_allclose(state.astype(np.float32) @ new_weight + new_bias, logits,
                                   atol=0.02 * float(np.abs(logits).max()) + 0.05)
