"""Int8 models compute the same numbers on every x86 CPU (qa/int8.py), checked against the exact
integer arithmetic in numpy, with real ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from qa import int8
from qa.training.export import quantize_onnx

K, N = 1536, 8


def _matmul_model(path, weights):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, N])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")
    graph = helper.make_graph([node], "one_matmul", [x], [y], [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what ONNX Runtime reads, not the newest onnx writes
    onnx.save(model, str(path))


def _exact(model_file, x):
    """What the quantized graph means: DynamicQuantizeLinear of x, then exact integer products
    with the stored weights, then the scales (ONNX's definitions, round half to even)."""
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(model_file)).graph.initializer}
    weights = next(v for k, v in inits.items() if k.endswith("_quantized")).astype(np.int64)
    w_zero = next(v for k, v in inits.items() if k.endswith("_zero_point")).astype(np.int64)
    w_scale = next(v for k, v in inits.items() if k.endswith("_scale")).astype(np.float32)
    low, high = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = np.float32((high - low) / 255)
    zero = int(np.clip(np.rint(-low / scale), 0, 255))
    q = np.clip(np.rint(x / scale) + zero, 0, 255).astype(np.int64)
    return ((q - zero) @ (weights - w_zero)).astype(np.float32) * (scale * w_scale)


def test_unsigned_weights_give_the_exact_products_where_signed_ones_may_saturate(tmp_path):
    rng = np.random.default_rng(0)
    # Large weights of one sign and large activations: pairs of u8 x s8 products beyond 16 bits,
    # which an AVX2 CPU without VNNI clips.
    weights = rng.uniform(0.5, 1.0, (K, N)).astype(np.float32)
    _matmul_model(tmp_path / "fp32.onnx", weights)
    quantized = quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", per_channel=True)
    x = rng.uniform(0.8, 1.0, (4, K)).astype(np.float32)
    expected = _exact(quantized, x)

    model = onnx.load(str(quantized))
    assert int8.unsigned_weights(model) == 2  # the weight and its zero point
    shifted = [i for i in model.graph.initializer if i.name.endswith(("_quantized", "_zero_point"))]
    assert all(i.data_type == TensorProto.UINT8 for i in shifted)
    assert int8.unsigned_weights(model) == 0  # already unsigned: nothing to do

    options = ort.SessionOptions()
    got = int8.session(quantized, options, exact=False).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # And the float result it stands for (int8 rounding only).
    np.testing.assert_allclose(got, x @ weights, rtol=0.01)


def test_the_file_on_disk_is_left_as_it_is(tmp_path):
    weights = np.random.default_rng(1).normal(size=(K, N)).astype(np.float32)
    _matmul_model(tmp_path / "fp32.onnx", weights)
    quantized = quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", per_channel=True)
    before = quantized.read_bytes()
    int8.session(quantized, ort.SessionOptions(), exact=False)
    assert quantized.read_bytes() == before


def test_which_cpus_get_the_unsigned_form_and_bfloat16(monkeypatch):
    from qa import cpu

    cases = [("x86_64", {"avx2", "avx512_vnni"}, True, False), ("x86_64", {"avx2", "avx_vnni"}, True, False),
             ("x86_64", {"avx2", "avx512f"}, False, False), ("x86_64", None, False, False),
             ("x86_64", {"avx512_vnni", "avx512_bf16"}, True, True), ("aarch64", {"asimd", "bf16"}, True, True),
             ("aarch64", {"asimd"}, True, False)]
    for machine, flags, exact, bf16 in cases:
        monkeypatch.setattr(cpu.platform, "machine", lambda machine=machine: machine)
        monkeypatch.setattr(cpu, "flags", lambda flags=flags: None if flags is None else frozenset(flags))
        assert (cpu.sums_int8_exactly(), cpu.has_native_bf16()) == (exact, bf16), (machine, flags)


def test_a_weight_that_another_node_reads_is_left_signed(tmp_path):
    weights = np.random.default_rng(2).normal(size=(K, N)).astype(np.float32)
    _matmul_model(tmp_path / "fp32.onnx", weights)
    model = onnx.load(str(quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", per_channel=True)))
    weight = next(i.name for i in model.graph.initializer if i.name.endswith("_quantized"))
    model.graph.node.append(helper.make_node("Identity", [weight], ["also_read"]))
    assert int8.unsigned_weights(model) == 0
