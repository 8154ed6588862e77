"""The reader's export to ONNX and its int8 forms, on a tiny checkpoint (real ONNX Runtime)."""

import numpy as np

from .conftest import tiny_qa_checkpoint


def _logits(onnx_file, ids):
    import onnxruntime as ort

    from qa import int8

    # Loaded as the service loads it: on a CPU without VNNI the stored int8 weights saturate.
    session = int8.session(onnx_file, ort.SessionOptions())
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return np.concatenate(session.run(None, feeds), axis=1)


def test_mixed_int8_keeps_only_the_feed_forward_outputs_in_float32_matmuls(tmp_path):
    import onnx

    from qa.training import export_onnx, quantize_mixed
    from qa.training.export import wide_matmuls

    fp32 = export_onnx(tiny_qa_checkpoint(tmp_path / "checkpoint"), tmp_path / "fp32.onnx")
    wide = wide_matmuls(fp32)
    # One per layer, found by the weight's shape (64 x 32 in the tiny model), not by name.
    assert len(wide) == 2 and all("/output/dense/" in name and "attention" not in name for name in wide)

    mixed = quantize_mixed(fp32, tmp_path / "mixed.onnx")
    graph = onnx.load(str(mixed)).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2}
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    matmuls = {n.name: n for n in graph.node if n.op_type == "MatMul"}
    # The wide ones multiply in float32 over int8-stored weights; no MatMul reads a float32 weight.
    assert all(matmuls[name].input[1] in dequantized for name in wide)
    assert not any(n.input[1] in floats for n in matmuls.values())
    # The others became int8 matmuls.
    assert any(n.op_type in ("DynamicQuantizeMatMul", "MatMulInteger") for n in graph.node)
    assert not list(tmp_path.glob("*.partial.onnx"))
    assert mixed.stat().st_size < fp32.stat().st_size / 2

    ids = np.arange(1000, 1096, dtype=np.int64).reshape(2, 48)
    exact, approx = _logits(fp32, ids), _logits(mixed, ids)
    assert approx.shape == exact.shape
    assert np.abs(approx - exact).max() < 0.05 * np.abs(exact).max()
