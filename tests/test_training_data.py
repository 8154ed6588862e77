"""The training data the reader learns from: SQuAD parts and the synthetic unanswerable questions."""

from pathlib import Path

from qa.training import SquadExample, load_squad, synthetic_unanswerable

from .conftest import tiny_qa_checkpoint

# A few SQuAD paragraphs in the project (tests/data/README.md), so no test needs ../shared.
SAMPLE = (Path(__file__).resolve().parent / "data" / "squad-train-sample.json",)


def test_synthetic_unanswerable_questions_are_unanswerable_from_their_paragraph():
    examples = load_squad(SAMPLE)
    made = synthetic_unanswerable(examples, 0.3, seed=7)
    answerable = sum(e.answerable for e in examples)
    assert 0.2 * answerable < len(made) <= 0.3 * answerable * 1.1
    by_id = {e.id: e for e in examples}
    kinds = {"swap": 0, "elsewhere": 0}
    for example in made:
        assert not example.answerable
        original_id, kind = example.id.rsplit("-", 1)
        original = by_id[original_id]
        kinds[kind] += 1
        if kind == "swap":
            # One word changed, to a word the paragraph does not hold.
            assert example.context == original.context and example.question != original.question
            new_words = set(example.question.split()) - set(original.question.split())
            assert new_words and not any(w.strip("?,.") in example.context.split() for w in new_words)
        else:
            assert example.question == original.question and example.context != original.context
            assert not any(text.lower() in example.context.lower() for text, _ in original.answers)
    assert kinds["swap"] > kinds["elsewhere"] > 0


def test_synthetic_unanswerable_is_seeded_and_skips_unanswerable_questions():
    examples = [
        SquadExample("a", "T1", "When did Rollo reach Normandy?", "Rollo reached Normandy in 911.", (("911", 26),)),
        SquadExample("b", "T2", "Who built the Tower of London?", "William built the Tower of London.", (("William", 0),)),
        SquadExample("c", "T2", "Who sank?", "Nobody knows.", ()),
    ]
    first = synthetic_unanswerable(examples, 1.0, seed=3)
    assert first == synthetic_unanswerable(examples, 1.0, seed=3)
    assert all(not e.id.startswith("c-") for e in first)


def test_elsewhere_negatives_take_the_paragraph_most_like_the_question():
    # What a retriever hands the reader: the article's paragraph sharing the question's rarest
    # words, not a random one, and never one that holds the answer.
    answer = "Rollo reached Normandy in 911, sailing up the Seine."
    like = "The Seine flowed past Rouen, where Viking ships sailed each spring."
    answering = "Normandy was granted to Rollo, who reached it in 911."
    other = "Norman architecture favoured round arches and thick walls."
    examples = [
        SquadExample("q", "Normans", "When did Rollo reach Normandy sailing up the Seine?", answer, (("911", 26),)),
        SquadExample("p1", "Normans", "Where did ships sail?", like, (("past Rouen", like.index("past")),)),
        SquadExample("p2", "Normans", "Who was granted Normandy?", answering, (("Rollo", answering.index("Rollo")),)),
        SquadExample("p3", "Normans", "What arches?", other, (("round", other.index("round")),)),
    ]
    for seed in range(5):
        made = {e.id: e for e in synthetic_unanswerable(examples, 1.0, seed, kind="elsewhere")}
        assert made["q-elsewhere"].context == like
        assert made["q-elsewhere"].question == examples[0].question and not made["q-elsewhere"].answerable
        assert not any(e.id.endswith("-swap") for e in made.values())
    for seed in range(5):  # mixed: a random paragraph, never the answering one
        assert all(e.context != answering for e in synthetic_unanswerable(examples, 1.0, seed) if e.id.startswith("q-"))


def test_the_training_command_names_the_kind_of_negatives():
    from qa.training.cli import training_command

    stats = dict(epochs=1, lr=1e-4, batch_size=16, max_length=256, stride=96, seed=14, threads=2,
                 synthetic_unanswerable=0.25, synthetic_kind="elsewhere")
    assert "--synthetic-unanswerable 0.25 --synthetic-kind elsewhere" in training_command(stats)
    assert "--synthetic-kind" not in training_command({**stats, "synthetic_kind": "mixed"})
    # bfloat16 is chosen by the CPU unless asked for: the command says which was used.
    assert training_command({**stats, "bf16": True}).endswith(" --bf16")
    assert training_command({**stats, "bf16": False}).endswith(" --no-bf16")


def test_synthetic_unanswerable_does_not_depend_on_hash_seeds():
    # A seeded training run must see the same questions in every process.
    import os
    import subprocess
    import sys

    code = (f"import hashlib; from qa.training import load_squad, synthetic_unanswerable as s; SAMPLE = [{str(SAMPLE[0])!r}];"
            "print(hashlib.sha1('|'.join(e.question + e.context for e in s(load_squad(SAMPLE), 0.2, 5)).encode()).hexdigest())")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_layer_depth_orders_embeddings_layers_and_head():
    from qa.training import layer_depth

    assert layer_depth("bert.embeddings.word_embeddings.weight", 6) == 0
    assert layer_depth("bert.encoder.layer.0.attention.self.query.weight", 6) == 1
    assert layer_depth("bert.encoder.layer.5.output.dense.bias", 6) == 6
    assert layer_depth("qa_outputs.weight", 6) == 7


def test_training_is_seeded_and_the_adversarial_step_changes_what_is_learned(tmp_path):
    import torch
    from transformers import AutoModelForQuestionAnswering

    from qa.training import train_reader

    base = tiny_qa_checkpoint(tmp_path / "base")

    def trained(name, **options):
        stats = train_reader(SAMPLE, tmp_path / name, base_model=base, limit=24, epochs=1, batch_size=8,
                             max_length=128, stride=32, seed=5, bf16=False, freeze_embeddings=True, **options)
        assert stats["adversarial"] == options.get("adversarial", 0.0)
        model = AutoModelForQuestionAnswering.from_pretrained(str(tmp_path / name))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    plain, again = trained("plain"), trained("again")
    pushed = trained("pushed", adversarial=1.0)
    assert torch.equal(plain, again)
    assert torch.isfinite(pushed).all() and not torch.allclose(plain, pushed)


def test_a_killed_training_run_resumes_to_the_same_weights(tmp_path):
    # The child saves the whole state after every step and is killed (SIGKILL) right after its
    # fifth save; --resume then carries on. It must end exactly where an uninterrupted run does.
    import os
    import signal
    import subprocess
    import sys

    import torch
    from transformers import AutoModelForQuestionAnswering

    from qa.training import train_reader

    base = tiny_qa_checkpoint(tmp_path / "base")
    options = dict(base_model=base, limit=40, epochs=2, batch_size=8, max_length=128, stride=32, seed=5,
                   bf16=False, freeze_embeddings=True, checkpoint_minutes=0.0)
    cut = tmp_path / "cut"
    child = f"""
import os, signal
import qa.training.loop as loop
saves = []
def replace(a, b, _replace=os.replace):
    _replace(a, b)
    saves.append(b)
    if len(saves) == 5:
        os.kill(os.getpid(), signal.SIGKILL)
loop.os.replace = replace
loop.train_reader({[str(SAMPLE[0])]!r}, {str(cut)!r}, **{ {**options, 'base_model': str(base)}!r})
"""
    killed = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (cut / "resume.pt").is_file() and not (cut / "model.safetensors").exists()
    assert not list(cut.glob("*.partial"))

    resumed = train_reader(SAMPLE, cut, resume=True, **options)
    whole = train_reader(SAMPLE, tmp_path / "whole", **options)
    assert resumed["steps"] == whole["steps"] > 5

    def weights(folder):
        model = AutoModelForQuestionAnswering.from_pretrained(str(folder))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(cut), weights(tmp_path / "whole"))


def test_a_run_started_from_an_earlier_one_keeps_its_record_and_command(tmp_path):
    # A second epoch can run in a later session with --init: the model card must still say how
    # to reproduce the whole thing, both runs in order.
    from qa.training import train_reader
    from qa.training.cli import training_command

    base = tiny_qa_checkpoint(tmp_path / "base")
    options = dict(limit=16, epochs=1, batch_size=8, max_length=128, stride=32, bf16=False, freeze_embeddings=True)
    first = train_reader(SAMPLE, tmp_path / "one" / "checkpoint", base_model=base, seed=5, **options)
    second = train_reader(SAMPLE, tmp_path / "two", base_model=tmp_path / "one" / "checkpoint", seed=6,
                          lr=5e-5, **options)
    assert second["init_stats"] == first
    assert second["train_seconds_total"] >= second["train_seconds"]
    command = training_command(second)
    first_part, second_part = command.split(" && ")
    assert first_part == training_command(first) + f" --work {tmp_path / 'one'}"
    assert "--seed 6" in second_part and "--lr 5e-05" in second_part
    assert second_part.endswith(f"--init {tmp_path / 'one'}/checkpoint")
