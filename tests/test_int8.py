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


def _guarded_softmax_model(fill: float):
    """x -> Softmax -> Where(IsNaN(p), fill, p) -> MatMul: the pattern torch's attention export makes."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    nodes = [helper.make_node("Softmax", ["x"], ["p"], axis=-1),
             helper.make_node("IsNaN", ["p"], ["nan"]),
             helper.make_node("Constant", [], ["fill"], value=numpy_helper.from_array(np.array([fill], np.float32))),
             helper.make_node("Where", ["nan", "fill", "p"], ["guarded"]),
             helper.make_node("MatMul", ["guarded", "w"], ["y"])]
    w = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(4, 2), "w")
    model = helper.make_model(helper.make_graph(nodes, "guarded", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_the_attention_nan_guard_is_dropped_and_nothing_else():
    x = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    model = _guarded_softmax_model(0.0)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert int8.drop_nan_guards(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Softmax", "MatMul"]
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.array_equal(before, after)
    assert int8.drop_nan_guards(model) == 0  # nothing left to drop
    # A Where that puts something other than 0 in place of NaN means something: kept.
    assert int8.drop_nan_guards(_guarded_softmax_model(1.0)) == 0


def test_a_guard_whose_parts_the_graph_shows_outside_keeps_them():
    x = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
    # The NaN test is also an output of the graph: the guard goes, the test stays and still answers.
    model = _guarded_softmax_model(0.0)
    model.graph.output.append(helper.make_tensor_value_info("nan", TensorProto.BOOL, [None, 4]))
    assert int8.drop_nan_guards(model) == 1
    y, nan = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert not nan.any() and y.shape == (3, 2)
    # The fill is an initializer that is also a graph input (torch's keep_initializers_as_inputs):
    # it stays, or the model would ask for it.
    model = _guarded_softmax_model(0.0)
    fill = next(n for n in model.graph.node if n.op_type == "Constant")
    model.graph.node.remove(fill)
    model.graph.initializer.append(numpy_helper.from_array(np.array([0.0], np.float32), "fill"))
    model.graph.input.append(helper.make_tensor_value_info("fill", TensorProto.FLOAT, [1]))
    assert int8.drop_nan_guards(model) == 1
    assert "fill" in {i.name for i in model.graph.initializer}
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    # A graph with subgraphs (If, Loop) is left as it is: their reads are not followed.
    model = _guarded_softmax_model(0.0)
    branch = helper.make_graph([helper.make_node("Identity", ["guarded"], ["z"])], "branch", [],
                               [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    model.graph.node.append(helper.make_node("If", ["cond"], ["w"], then_branch=branch, else_branch=branch))
    assert int8.drop_nan_guards(model) == 0


def test_the_shipped_models_give_the_same_logits_without_their_nan_guards():
    """Both shipped models carry six guards (one a layer); dropped, a padded batch of real
    windows of different lengths gives the same numbers, bit for bit."""
    from pathlib import Path

    from tokenizers import Tokenizer

    models = Path(__file__).resolve().parent.parent / "qa" / "models"
    texts = [("How many drones were shot down?", "Air defences shot down 23 of the 25 drones overnight, officials said."),
             ("Who spoke?", "The mayor spoke."), ("When?", "On Monday, " * 30)]
    for name in ("reader", "encoder"):
        model_file = models / name / "model.onnx"
        tokenizer = Tokenizer.from_file(str(models / name / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        encodings = [tokenizer.encode(q, p) for q, p in texts]
        length = max(len(e.ids) for e in encodings)
        feed = {"input_ids": np.zeros((len(texts), length), np.int64),
                "attention_mask": np.zeros((len(texts), length), np.int64),
                "token_type_ids": np.zeros((len(texts), length), np.int64)}
        for row, e in enumerate(encodings):
            feed["input_ids"][row, :len(e.ids)] = e.ids
            feed["attention_mask"][row, :len(e.ids)] = 1
            feed["token_type_ids"][row, :len(e.ids)] = e.type_ids
        model = onnx.load(str(model_file))
        int8.unsigned_weights(model)  # as on a CPU without VNNI, for both sessions alike
        guarded = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        assert int8.drop_nan_guards(model) == 6, name
        assert not any(n.op_type == "IsNaN" for n in model.graph.node), name
        unguarded = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = {k: v for k, v in feed.items() if k in {i.name for i in guarded.get_inputs()}}
        for a, b in zip(guarded.run(None, feed), unguarded.run(None, feed)):
            assert np.array_equal(a, b), name
