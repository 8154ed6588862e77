"""Retraining the last layer and the span head on the int8 layers below (qa.training.top), on a
tiny checkpoint exported and quantized as the shipped reader is (real ONNX Runtime, real torch)."""

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from qa.training import export_onnx, quantize_onnx
from qa.training.head import body_states
from qa.training.top import fit_top, graph_loss, load_top, top_parts, write_top

from .conftest import tiny_qa_checkpoint
from .test_training_head import _logits, _windows


def _top_logits(top, states):
    with torch.no_grad():
        return [top(torch.from_numpy(s.astype(np.float32))[None], torch.ones(1, len(s), dtype=torch.bool))[0].numpy()
                for s in states]


def _initializers(path):
    return {init.name: numpy_helper.to_array(init) for init in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("layers", [1, 2])
def test_the_top_layers_are_read_written_and_retrained_over_an_unchanged_body(tmp_path, layers):
    fp32 = export_onnx(tiny_qa_checkpoint(tmp_path / "checkpoint"), tmp_path / "fp32.onnx")
    model = quantize_onnx(fp32, tmp_path / "int8.onnx", per_channel=True)
    parts = top_parts(onnx.load(str(model)), layers)
    # The tiny model has two layers: the top one reads layer 0, both read the embeddings.
    assert parts["input"].startswith("/inner/bert/encoder/layer.0/" if layers == 1 else "/inner/bert/embeddings/")
    assert parts["head_size"] == 16  # hidden 32 in 2 heads
    features = _windows()
    states = body_states(model, features, batch=1, tensor=parts["input"])
    top = load_top(onnx.load(str(model)), layers)
    # The float layer over the int8 layer's input gives the model's own logits, up to the int8
    # rounding of the layer's activations.
    for mine, theirs in zip(_top_logits(top, states), _logits(model, features)):
        np.testing.assert_allclose(mine, theirs, atol=0.02 * float(np.abs(theirs).max()) + 0.05)

    # Written back unchanged, it reads back the same (this export shares its equal zero biases
    # through Identity nodes: the layer's get their own initializers).
    write_top(model, tmp_path / "same.onnx", top)
    again = load_top(onnx.load(str(tmp_path / "same.onnx")), layers)
    assert all(torch.equal(a, b) for a, b in zip(top.state_dict().values(), again.state_dict().values()))
    before = _initializers(model)

    # The graph's own loss is the training loss of its logits.
    def cross_entropy(logits, label):
        return float(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[label])

    expected = np.mean([(cross_entropy(lg[:, 0], f[2]) + cross_entropy(lg[:, 1], f[3])) / 2
                        for lg, f in zip(_logits(model, features), features)])
    assert graph_loss(model, features, range(len(features)), batch=1) == pytest.approx(expected, abs=1e-4)

    labels = [(f[2], f[3]) for f in features]
    losses = fit_top(top, states, labels, epochs=30, lr=3e-3, seed=1, batch=16)
    assert losses["held_out_loss_after"] < losses["held_out_loss_before"] - 0.1
    write_top(model, tmp_path / "refitted.onnx", top)
    after = _initializers(tmp_path / "refitted.onnx")
    # What changed in place: the int8 weights and scales of six matmuls a layer and the head's,
    # and the head's own bias; the shared zero biases and all that the layers below read did not.
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    below = {name for n in onnx.load(str(model)).graph.node if ("/layer.0/" if layers == 1 else "/embeddings/") in n.name
             for name in n.input}
    assert len(changed) == 2 * (6 * layers + 1) + 1 and not changed & below
    # The layers below are unchanged, and the file computes the retrained layer.
    again = body_states(tmp_path / "refitted.onnx", features, batch=1, tensor=parts["input"])
    assert all(np.array_equal(a, b) for a, b in zip(states, again))
    for mine, theirs in zip(_top_logits(top, states), _logits(tmp_path / "refitted.onnx", features)):
        np.testing.assert_allclose(mine, theirs, atol=0.03 * float(np.abs(theirs).max()) + 0.05)



def test_the_shipped_reader_is_written_back_number_for_number(tmp_path):
    """Read and written back unchanged, the shipped reader holds the same numbers, in the same
    initializers: each of its weights is its own, replaced in place."""
    from qa.training.head import DEFAULT_READER

    model_file = DEFAULT_READER / "model.onnx"
    model = onnx.load(str(model_file))
    parts = top_parts(model)
    assert parts["head_size"] == 32 and parts["input"].startswith("/inner/bert/encoder/layer.4/")
    assert top_parts(model, 3)["input"].startswith("/inner/bert/encoder/layer.2/")
    write_top(model_file, tmp_path / "same.onnx", load_top(model, 3))
    before, after = _initializers(model_file), _initializers(tmp_path / "same.onnx")
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert [list(n.input) for n in onnx.load(str(tmp_path / "same.onnx")).graph.node] == [list(n.input) for n in model.graph.node]


def _padded_run(model_file, tensor, features):
    """One padded batch of `features` through the int8 graph: the states of `tensor`, the start
    and end logits [batch, tokens, 2], and the mask (one run: the same activation scales)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from qa import int8

    model = onnx.load(str(model_file))
    model.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    length = max(len(f[0]) for f in features)
    ids, types, mask = (np.zeros((len(features), length), np.int64) for _ in range(3))
    for row, (window, window_types, *_) in enumerate(features):
        ids[row, : len(window)], types[row, : len(window)], mask[row, : len(window)] = window, window_types, 1
    start, end, states = int8.session(model, ort.SessionOptions()).run(
        ["start_logits", "end_logits", tensor], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    return states, np.stack([start, end], axis=-1), mask.astype(bool)


@pytest.mark.parametrize("layers, within", [(1, 0.3), (3, 1.0)])
def test_the_float_top_computes_what_the_shipped_graph_computes(layers, within):
    """On the shipped weights, over a padded batch of real windows, the float layers give the
    graph's logits up to its int8 rounding (measured: 0.12 for one layer, 0.44 for three; a
    missing attention scale, query and key swapped or the layer norms swapped give 1.7 to 9)."""
    from qa.training.data import base_model_path, load_squad
    from qa.training.head import DEFAULT_READER
    from qa.training.windows import build_features, load_tokenizer

    from .conftest import ROOT

    model_file = DEFAULT_READER / "model.onnx"
    model = onnx.load(str(model_file))
    examples = load_squad([ROOT / "data" / "squad" / "dev-v2.0-part.json"])[:12]
    features = build_features(examples, load_tokenizer(base_model_path()), 256, 96)[:12]
    assert len({len(f[0]) for f in features}) > 1  # a padded batch
    states, logits, mask = _padded_run(model_file, top_parts(model, layers)["input"], features)
    with torch.no_grad():
        mine = load_top(model, layers)(torch.from_numpy(states), torch.from_numpy(mask)).numpy()
    assert float(np.abs(mine - logits)[mask].max()) < within


def test_padding_does_not_change_a_window(tmp_path):
    """A window's logits are the same alone and in a padded batch: the mask hides the padding
    from every query (a mask over queries instead of keys would not)."""
    fp32 = export_onnx(tiny_qa_checkpoint(tmp_path / "checkpoint"), tmp_path / "fp32.onnx")
    model = onnx.load(str(quantize_onnx(fp32, tmp_path / "int8.onnx", per_channel=True)))
    top = load_top(model, 2)
    rng = np.random.default_rng(0)
    states = [rng.normal(size=(n, 32)).astype(np.float32) for n in (5, 9, 14)]
    padded = np.zeros((3, 14, 32), np.float32)
    mask = np.zeros((3, 14), bool)
    for row, s in enumerate(states):
        padded[row, : len(s)], mask[row, : len(s)] = s, True
    with torch.no_grad():
        batch = top(torch.from_numpy(padded), torch.from_numpy(mask)).numpy()
    for row, alone in enumerate(_top_logits(top, states)):
        np.testing.assert_allclose(batch[row, : len(states[row])], alone, atol=1e-5)


def _tiny_reader(tmp_path):
    """A tiny int8 reader folder as `python -m qa.training` leaves one (the fields main reads)."""
    import json
    import shutil

    from qa.checksums import write_checksums

    checkpoint = tiny_qa_checkpoint(tmp_path / "checkpoint")
    reader = tmp_path / "reader"
    reader.mkdir()
    quantize_onnx(export_onnx(checkpoint, tmp_path / "fp32.onnx"), reader / "model.onnx", per_channel=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(checkpoint / name, reader / name)
    config = {"training": {"max_length": 64, "stride": 32, "max_answer_tokens": 30}, "command": "python -m qa.training",
              "scores": {}, "quantized": True, "threshold": 0.0}
    (reader / "reader.json").write_text(json.dumps(config))
    write_checksums(reader)
    return reader


def test_main_writes_nothing_when_the_int8_graph_did_not_gain(tmp_path, capsys):
    """With nothing learned (lr 0) the written graph's held-out loss cannot fall: main says so,
    exits 1, and leaves no reader behind."""
    import json

    from qa.training.top import main

    from .conftest import ROOT

    squad = json.loads((ROOT / "data" / "squad" / "dev-v2.0-part.json").read_text())
    squad["data"] = squad["data"][:1]
    (tmp_path / "train.json").write_text(json.dumps(squad))
    reader, out = _tiny_reader(tmp_path), tmp_path / "out"
    code = main(["--reader", str(reader), "--out", str(out), "--train", str(tmp_path / "train.json"),
                 "--lr", "0", "--epochs", "1", "--threads", "1"])
    assert code == 1 and "did not fall" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_a_stopped_fit_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, dropout):
    """Stopped mid-run, the fit leaves its last whole state in the checkpoint; resumed from it,
    it ends with the very weights and losses of a run never stopped, with dropout too (the
    random state travels with the checkpoint). A checkpoint of another run is refused."""
    fp32 = export_onnx(tiny_qa_checkpoint(tmp_path / "checkpoint"), tmp_path / "fp32.onnx")
    model = quantize_onnx(fp32, tmp_path / "int8.onnx", per_channel=True)
    features = _windows()
    states = body_states(model, features, batch=1, tensor=top_parts(onnx.load(str(model)), 2)["input"])
    labels = [(f[2], f[3]) for f in features]
    settings = dict(epochs=3, lr=3e-3, seed=1, batch=16)  # 36 steps

    whole = load_top(onnx.load(str(model)), 2, dropout)
    expected = fit_top(whole, states, labels, **settings)

    checkpoint = tmp_path / "work" / "resume.pt"
    stopped = load_top(onnx.load(str(model)), 2, dropout)
    calls = []

    def stop(*_):
        calls.append(1)
        if len(calls) == 25:  # the held-out loss before (a batch), then 23 steps, then this one
            raise KeyboardInterrupt

    handle = stopped.register_forward_pre_hook(stop)
    with pytest.raises(KeyboardInterrupt):
        fit_top(stopped, states, labels, **settings, checkpoint=checkpoint, checkpoint_minutes=0, run="tiny")
    handle.remove()
    assert torch.load(checkpoint, weights_only=False)["step"] == 23
    assert not list(checkpoint.parent.glob("*.partial"))

    resumed = load_top(onnx.load(str(model)), 2, dropout)
    got = fit_top(resumed, states, labels, **settings, checkpoint=checkpoint, resume=True, run="tiny")
    assert got["resumed_seconds"] > 0
    assert {k: v for k, v in got.items() if k != "resumed_seconds"} == \
        {k: v for k, v in expected.items() if k != "resumed_seconds"}
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))

    with pytest.raises(RuntimeError, match="another run"):
        fit_top(load_top(onnx.load(str(model)), 2, dropout), states, labels, **{**settings, "lr": 1e-3},
                checkpoint=checkpoint, resume=True, run="tiny")
    with pytest.raises(RuntimeError, match="another run"):
        fit_top(load_top(onnx.load(str(model)), 2, 0.2), states, labels, **settings,
                checkpoint=checkpoint, resume=True, run="tiny")


def test_dropout_acts_while_training_only(tmp_path):
    """With dropout, two training-mode passes differ and the evaluation-mode pass is the layers'
    own logits, as without it; the rate 0 changes nothing in either mode."""
    fp32 = export_onnx(tiny_qa_checkpoint(tmp_path / "checkpoint"), tmp_path / "fp32.onnx")
    model = onnx.load(str(quantize_onnx(fp32, tmp_path / "int8.onnx", per_channel=True)))
    states = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 9, 32)).astype(np.float32))
    mask = torch.ones(2, 9, dtype=torch.bool)
    plain, dropping = load_top(model, 2), load_top(model, 2, 0.3)
    with torch.no_grad():
        reference = plain.eval()(states, mask)
        assert torch.equal(plain.train()(states, mask), reference)
        assert not torch.equal(dropping.train()(states, mask), dropping(states, mask))
        assert torch.equal(dropping.eval()(states, mask), reference)


def test_main_publishes_the_refitted_reader_beside_the_one_it_read(tmp_path, capsys):
    """A run that gains writes a whole reader to --out: the retrained graph with its checksums,
    reader.json telling the refit and its command, the model card; the reader it read is
    untouched, and no checkpoint is left behind."""
    import json

    from qa.checksums import verify_model_files
    from qa.readers.neural import NeuralReader
    from qa.training.top import main

    from .conftest import ROOT

    squad = json.loads((ROOT / "data" / "squad" / "dev-v2.0-part.json").read_text())
    squad["data"] = squad["data"][:1]
    (tmp_path / "train.json").write_text(json.dumps(squad))
    reader, out, work = _tiny_reader(tmp_path), tmp_path / "out", tmp_path / "work"
    before = (reader / "model.onnx").read_bytes()
    code = main(["--reader", str(reader), "--out", str(out), "--train", str(tmp_path / "train.json"), "--lr", "0.003",
                 "--epochs", "2", "--threads", "1", "--work", str(work), "--checkpoint-minutes", "0", "--dropout", "0.1"])
    assert code == 0, capsys.readouterr().err
    assert (reader / "model.onnx").read_bytes() == before and (out / "model.onnx").read_bytes() != before
    verify_model_files(out, "reader model")
    config = json.loads((out / "reader.json").read_text())
    refit = config["training"]["top_refit"]
    assert refit["layers"] == 1 and refit["held_out_int8_after"] < refit["held_out_int8_before"]
    assert refit["dropout"] == 0.1
    assert config["command"] == ("python -m qa.training && python -m qa.training.top --layers 1 --epochs 2 --lr 0.003 "
                                 f"--seed 14 --dropout 0.1 --train {tmp_path / 'train.json'}")
    assert "dev" in config["scores"] and "top_refit" not in json.loads((reader / "reader.json").read_text())["training"]
    assert "retrained" in (out / "MODEL_CARD.md").read_text() and "with the training loss and dropout 0.1" in (
        out / "MODEL_CARD.md").read_text()
    assert NeuralReader(out).read("Who?", [], 1) == []
    assert not list(work.glob("resume.pt*"))
    # Its top was refitted: the stage refuses to refit it again, and writes nothing.
    assert main(["--reader", str(out), "--out", str(tmp_path / "again")]) == 2
    assert "refitted already" in capsys.readouterr().err and not (tmp_path / "again").exists()


@pytest.mark.parametrize("layers", [3, 6])
def test_the_states_are_those_the_whole_graph_computes_from_a_graph_cut_to_them(layers):
    """`body_states` runs only the nodes the wanted tensor needs (ONNX Runtime would run them all),
    and gets the very numbers the whole graph computes for it."""
    from qa.training.data import base_model_path, load_squad
    from qa.training.head import DEFAULT_READER, _only_what_makes
    from qa.training.windows import build_features, load_tokenizer

    from .conftest import ROOT

    model_file = DEFAULT_READER / "model.onnx"
    model = onnx.load(str(model_file))
    tensor = top_parts(model, layers)["input"]
    cut = _only_what_makes(onnx.load(str(model_file)), tensor)
    assert 0 < len(cut.graph.node) < len(model.graph.node) * (6 - layers + 1) / 6
    examples = load_squad([ROOT / "data" / "squad" / "dev-v2.0-part.json"])[:12]
    features = build_features(examples, load_tokenizer(base_model_path()), 256, 96)[:12]
    states = body_states(model_file, features, batch=len(features), tensor=tensor)
    whole, _, _ = _padded_run(model_file, tensor, features)
    for row, mine in enumerate(states):
        assert np.array_equal(mine, whole[row, : len(mine)].astype(np.float16))


def test_main_refuses_to_resume_a_checkpoint_of_other_windows_before_running_the_graph(tmp_path, capsys):
    import json

    from qa.training.top import main

    from .conftest import ROOT

    squad = json.loads((ROOT / "data" / "squad" / "dev-v2.0-part.json").read_text())
    squad["data"] = squad["data"][:1]
    (tmp_path / "train.json").write_text(json.dumps(squad))
    reader, work = _tiny_reader(tmp_path), tmp_path / "work"
    work.mkdir()
    torch.save({"fingerprint": {"run": "another reader's"}}, work / "resume.pt")
    code = main(["--reader", str(reader), "--out", str(tmp_path / "out"), "--train", str(tmp_path / "train.json"),
                 "--threads", "1", "--work", str(work), "--resume"])
    assert code == 2 and "another reader" in capsys.readouterr().err
    assert (work / "resume.pt").is_file() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("rate", ["-0.1", "1"])
def test_main_refuses_a_dropout_outside_0_to_1_before_any_work(tmp_path, capsys, rate):
    from qa.training.top import main

    with pytest.raises(SystemExit) as stop:
        main(["--reader", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--dropout", rate])
    assert stop.value.code == 2 and "--dropout must be at least 0 and below 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
