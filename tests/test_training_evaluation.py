"""The training's own scoring of a reader (`qa.training.evaluation`), with the shipped reader."""

import json
from pathlib import Path

from qa.readers.neural import NeuralReader
from qa.training.evaluation import _sentence_chunks, evaluate_gold, evaluate_news

ROOT = Path(__file__).resolve().parent.parent


def test_news_questions_are_read_over_the_reader_s_own_chunks(tmp_path):
    reader = NeuralReader()
    lines = [json.loads(line) for line in (ROOT / "data" / "news_dev.jsonl").read_text().splitlines() if line.strip()]
    picked = [q for q in lines if q.get("answers")][:2] + [q for q in lines if not q.get("answers")][:2]
    news = tmp_path / "news.jsonl"
    news.write_text("".join(json.dumps(q) + "\n" for q in picked))
    figures = evaluate_news(reader, news, ROOT / "corpus")
    assert (figures["answerable"], figures["unanswerable"]) == (2, 2)
    assert all(0.0 <= figures[k] <= 1.0 for k in ("em", "f1", "no_answer_accuracy"))
    assert figures["em"] >= 0.5  # a reader that reads: the shipped one gets both right

    # The chunks hold the article's own text at its offsets, within the budget the reader counts.
    path = sorted((ROOT / "corpus").glob("*.txt"))[0]
    text = path.read_text(encoding="utf-8")
    chunks = _sentence_chunks(reader.count_tokens, path.stem, text, 200)
    assert len(chunks) > 1
    assert all(c.text == text[c.start:c.end] for c in chunks)
    counts = reader.count_tokens([c.text for c in chunks])
    assert max(counts) <= 200


def test_gold_paragraphs_are_scored_answerable_and_not(tmp_path):
    squad = json.loads((ROOT / "data" / "squad" / "dev-v2.0-part.json").read_text())
    paragraph = squad["data"][0]["paragraphs"][0]
    small = {"version": "v2.0", "data": [{"title": squad["data"][0]["title"], "paragraphs": [paragraph]}]}
    (tmp_path / "dev.json").write_text(json.dumps(small))
    figures = evaluate_gold(NeuralReader(), tmp_path / "dev.json")
    assert figures["answerable"] + figures["unanswerable"] == len(paragraph["qas"])
    assert figures["f1"] >= 0.6  # the shipped reader gets this paragraph's questions right
    # v2 overall: F1 on the answerable at the threshold, and 1 for each unanswerable abstained.
    expected = (figures["answerable"] * figures["f1_at_threshold"]
                + figures["unanswerable"] * figures["no_answer_accuracy"]) / len(paragraph["qas"])
    assert abs(figures["overall_f1"] - expected) < 1e-3
