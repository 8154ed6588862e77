"""The neural readers: the shipped ONNX span model, and the shared code path via a tiny HF model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from qa.errors import BadInput
from qa.readers.neural import DEFAULT_READER_PATH, HFReader, NeuralReader, load_neural_reader, trim_span
from qa.records import Passage

from .conftest import tiny_qa_checkpoint

ROOT = Path(__file__).resolve().parent.parent
ARTICLE_ID = "000_af743333a229a83a"
ARTICLE = ROOT / "corpus" / f"{ARTICLE_ID}.txt"
SENTENCE = "For his part, Kyiv Mayor Vitali Klitschko said that the Ukrainian defenses shot down 7 drones"


def article_passage(text: str, around: str, before: int = 300, after: int = 300) -> Passage:
    """A passage of whole lines of the article around `around`, with its true article offsets."""
    at = text.index(around)
    start = text.rfind("\n", 0, max(0, at - before)) + 1
    end = text.find("\n", at + len(around) + after)
    end = len(text) if end < 0 else end
    return Passage(ARTICLE_ID, "Kyiv drone attack", start, end, text[start:end], 1.0)


def check_well_formed(answers, passages, article_text: str, top_k: int) -> None:
    assert len(answers) <= top_k
    for answer in answers:
        c = answer.citation
        assert answer.text and answer.text == answer.text.strip()
        assert article_text[c.start : c.end] == answer.text
        passage = next(p for p in passages if p.article_id == c.article_id and p.start <= c.start and c.end <= p.end)
        assert passage.text[c.start - passage.start : c.end - passage.start] == answer.text
        assert article_text[answer.context.start : answer.context.end] == answer.context.text
        assert answer.context.start <= c.start and c.end <= answer.context.end
        assert math.isfinite(answer.score)


@pytest.fixture(scope="module")
def article_text() -> str:
    return ARTICLE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def neural() -> NeuralReader:
    return NeuralReader()


def test_shipped_reader_finds_a_number_with_exact_offsets(neural, article_text):
    passage = article_passage(article_text, SENTENCE)
    answers = neural.read("How many drones did the Ukrainian defenses shoot down?", [passage], 3)
    assert answers, "the reader abstained"
    best = answers[0]
    assert best.text == "7"
    expected = article_text.index(SENTENCE) + SENTENCE.index("7 drones")
    assert (best.citation.start, best.citation.end) == (expected, expected + 1)
    assert best.citation.article_id == ARTICLE_ID
    assert SENTENCE in best.context.text
    check_well_formed(answers, [passage], article_text, 3)


def test_shipped_reader_finds_a_name(neural, article_text):
    passage = article_passage(article_text, SENTENCE)
    answers = neural.read("Who is the mayor of Kyiv?", [passage], 1)
    assert answers and answers[0].text == "Vitali Klitschko"


def test_shipped_reader_batches_several_passages(neural, article_text):
    lines = [m for m in article_text.split("\n") if len(m.split()) > 8]
    passages = [article_passage(article_text, line, 0, 0) for line in lines[:8]]
    answers = neural.read("How many drones did the Ukrainian defenses shoot down?", passages, 5)
    check_well_formed(answers, passages, article_text, 5)
    assert answers and answers[0].text == "7"


def test_unrelated_question_gets_no_confident_answer(neural, article_text):
    passage = article_passage(article_text, SENTENCE)
    answers = neural.read("What is the boiling point of liquid nitrogen in kelvin?", [passage], 3)
    assert answers == [] or max(a.score for a in answers) < 0.5


def test_empty_inputs(neural):
    assert neural.read("Who?", [], 3) == []
    assert neural.read("", [Passage("a", "", 0, 5, "Hello", 1.0)], 3) == []


def test_trim_span_edges():
    text = 'He said "Kyiv," then left (for good).'
    s = text.index('"Kyiv,"')
    assert text[slice(*trim_span(text, s, s + len('"Kyiv,"')))] == "Kyiv"
    s = text.index("(for good)")
    assert text[slice(*trim_span(text, s, s + len("(for good)")))] == "for good"
    assert text[slice(*trim_span(text, s, s + len("(for good).")))] == "for good"
    assert text[slice(*trim_span(text, s + 1, s + len("(for good)")))] == "for good"
    text = "It was the U.S. Army."
    s = text.index("U.S.")
    assert text[slice(*trim_span(text, s, s + 4))] == "U.S."
    assert text[slice(*trim_span(text, text.index("Army"), len(text)))] == "Army"


def test_tiny_hf_checkpoint_is_read_through_the_same_code_path(tmp_path, article_text):
    tiny_qa_checkpoint(tmp_path)
    reader = load_neural_reader(tmp_path, threshold=-1e9, max_length=64, stride=16)
    assert isinstance(reader, HFReader) and reader.name == "hf"
    passages = [
        article_passage(article_text, SENTENCE, 200, 200),
        article_passage(article_text, "Stoltenberg", 100, 100),
    ]
    answers = reader.read("How many drones did the Ukrainian defenses shoot down?", passages, 4)
    assert answers
    check_well_formed(answers, passages, article_text, 4)


def test_load_neural_reader_picks_the_right_reader(tmp_path):
    assert isinstance(load_neural_reader(DEFAULT_READER_PATH), NeuralReader)
    with pytest.raises(BadInput) as err:
        load_neural_reader(tmp_path)
    assert err.value.code == "bad_reader"
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(BadInput, match="not an extractive-QA model"):
        load_neural_reader(tmp_path)
    with pytest.raises(BadInput):
        load_neural_reader(tmp_path / "missing")


@pytest.mark.parametrize("weights", [
    dict(span=1.0, sentence=1.0, form=0.0),
    dict(span=1.0, sentence=2.0, form=0.4),  # a blend that runs well above 2
    dict(span=1.5, sentence=2.0, form=0.4, counted=0.6),
])
def test_hybrid_answers_in_the_order_of_its_blend(neural, encoder, article_text, weights):
    # The tuner (qa/tuning.py) scores the best candidate by the blend; the reader must answer
    # with that same candidate, whatever the weights.
    from qa.readers.hybrid import HybridReader, HybridWeights
    from qa.readers.rules import RuleReader

    reader = HybridReader(neural, RuleReader(encoder), HybridWeights(**weights, echo=0.5, min_support=0.0, threshold=-1e9))
    passages = [article_passage(article_text, SENTENCE, 200, 200), article_passage(article_text, "Kyiv", 0, 400)]
    for question in ("How many drones did the Ukrainian defenses shoot down?", "Who is the mayor of Kyiv?",
                     "When did the attack start?"):
        candidates, _ = reader.candidates(question, passages)
        best = max(candidates, key=reader.score)
        answers = reader.read(question, passages, 3)
        check_well_formed(answers, passages, article_text, 3)
        assert answers[0].text == passages[best.passage].text[best.start:best.end]
        # Scores keep the blend's order: distinct answers, distinct scores, none saturated.
        scores = [a.score for a in answers]
        # (How many distinct spans a model finds is the model's business: at least two to order.)
        assert len(answers) >= 2 and all(a > b for a, b in zip(scores, scores[1:])), scores
        assert 0.0 <= scores[-1] and scores[0] < 1.0


@pytest.mark.sqlite_only
def test_hybrid_reads_as_if_every_sentence_were_embedded_while_embedding_fewer(seed_engine):
    # read() embeds the sentences of the most promising candidates first and stops when no other
    # candidate could be among the answers; its answers must be those of scoring every candidate
    # (`candidates`, which the tuner reads), for any weights and any number of answers.
    import dataclasses
    import json

    from qa.readers.base import answer_in_passage, best_distinct
    from qa.readers.hybrid import HybridReader

    shipped = seed_engine.reader
    assert isinstance(shipped, HybridReader)

    class ReadOnce:
        """The span model's spans, read once per question (the part under test comes after)."""

        def __init__(self, spans):
            self.inner, self.memo = spans, {}

        def spans(self, question, passages):
            key = (question, tuple((p.article_id, p.start) for p in passages))
            if key not in self.memo:
                self.memo[key] = self.inner.spans(question, passages)
            return self.memo[key]

    spans = ReadOnce(shipped.span_reader)
    pairs = [json.loads(line)["question"] for line in (ROOT / "data" / "news_nearmiss_dev.jsonl").read_text().splitlines()]
    questions = pairs[:8]  # four answerable questions and their near-miss twins
    cosines = shipped.rules.sentence_cosines
    # The shipped settings; always answering (top_k answers to settle); scores below 0, where
    # unit scores clip and tie; and the support gate, which reads every sentence.
    for change in ({}, {"threshold": -1e9}, {"threshold": -1e9, "echo": 1.0}, {"min_support": 0.5}):
        reader = HybridReader(spans, shipped.rules, dataclasses.replace(shipped.weights, **change))
        embedded = {"read": 0, "all": 0}
        counting = "all"

        def counted(question, sentences, which):
            embedded[counting] += len(which)
            return cosines(question, sentences, which)
        try:
            reader.rules.sentence_cosines = counted
            for question in questions:
                passages = seed_engine.search(question, 8)
                counting = "all"
                candidates, best_support = reader.candidates(question, passages)
                counting = "read"
                for top_k in (1, 3):
                    expected = []
                    if candidates and best_support >= reader.weights.min_support:
                        expected = best_distinct([
                            answer_in_passage(passages[c.passage], c.start, c.end, reader.unit_score(reader.score(c)))
                            for c in candidates if reader.score(c) >= reader.weights.threshold], top_k)
                    assert reader.read(question, passages, top_k) == expected, (change, question, top_k)
        finally:
            del reader.rules.sentence_cosines
        if reader.weights.min_support > 0:
            assert embedded["read"] == 2 * embedded["all"], embedded  # the support gate reads every sentence
        elif not change:  # two readings (top_k 1 and 3), each embedding well under what the full one does
            assert embedded["read"] < 2 * 0.75 * embedded["all"], (change, embedded)


def test_the_windows_are_those_transformers_cuts():
    """The reader cuts windows with `tokenizers` alone; `transformers`' fast tokenizer, which the
    model was trained with (qa/training/windows.py), cuts the same: ids, types, offsets, sequence
    ids, and the windows a long passage overflows into."""
    from transformers import AutoTokenizer

    reader = NeuralReader()
    hf = AutoTokenizer.from_pretrained(str(DEFAULT_READER_PATH), use_fast=True)
    text = ARTICLE.read_text(encoding="utf-8")
    pairs = [("How many drones did the defenses shoot down?", text),  # several windows
             ("Who?", SENTENCE), ("Café “naïve” ½ 東京 👍🏽?", "ﬁne soft\u00adhyphen\ttabs\nand lines. " * 40)]
    for question, passage in pairs:
        q = reader._question(question)
        expected = hf([q], [passage], truncation="only_second", max_length=reader.max_length, stride=reader.stride,
                      return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
        first = reader._windows.encode_batch([(q, passage)])[0]
        windows = [first, *first.overflowing]
        assert len(windows) == len(expected["input_ids"]), question
        for k, window in enumerate(windows):
            assert window.ids == expected["input_ids"][k]
            assert window.type_ids == expected["token_type_ids"][k]
            assert [tuple(o) for o in window.offsets] == [tuple(o) for o in expected["offset_mapping"][k]]
            assert window.sequence_ids == expected.sequence_ids(k)
    assert len(reader._windows.encode_batch([(pairs[0][0], text)])[0].overflowing) >= 2
    # A long question is cut at the 64th word piece, as before.
    long_question = " ".join(["drone"] * 100)
    offsets = hf(long_question, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert reader._question(long_question) == long_question[: offsets[63][1]]
    assert reader.pad_id == hf.pad_token_id
    with pytest.raises(BadInput):
        NeuralReader(batch_size=0)
    texts = [SENTENCE, text, "Café “naïve” 👍🏽"]
    assert reader.count_tokens(texts) == [len(ids) for ids in hf(texts, add_special_tokens=False)["input_ids"]]


def test_the_shipped_reader_starts_without_torch_or_transformers():
    """They take seconds to import; the shipped reader needs neither (the CLI answers a question
    in about 1.5 s instead of 4)."""
    import subprocess
    import sys

    code = ("import sys; from qa.readers.neural import NeuralReader; NeuralReader(); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
