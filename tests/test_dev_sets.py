"""The news question sets that every quality figure is measured on: sound, and kept apart.

A gold answer that is not word for word in its article can never be matched exactly, and a
held-out question that also sits in a tuning set would let the tuner see it; both would move
figures without anyone noticing.
"""

import json
from pathlib import Path

import pytest

from qa.evaluate import dev_questions
from qa.tuning import DEV_SETS

DATA = Path(__file__).resolve().parent.parent / "data"
CORPUS = DATA.parent / "corpus"
NEWS_SETS = sorted(DATA.glob("news_*.jsonl"))
HOLDOUT = DATA / "news_holdout.jsonl"


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_news_set_is_found():
    assert {p.name for p in NEWS_SETS} >= {"news_dev.jsonl", "news_unanswerable_dev.jsonl", "news_nearmiss_dev.jsonl",
                                          "news_holdout.jsonl"}


@pytest.mark.parametrize("path", NEWS_SETS, ids=lambda p: p.name)
def test_gold_answers_are_word_for_word_in_their_article(path):
    for record in records(path):
        assert set(record) == {"id", "question", "answers", "article"}, record["id"]
        assert record["question"].strip().endswith("?"), record["id"]
        if record["answers"]:
            text = (CORPUS / record["article"]).read_text(encoding="utf-8")
            for answer in record["answers"]:
                assert answer and answer in text, f"{record['id']}: {answer!r} is not in {record['article']}"
        else:
            assert record["article"] is None, record["id"]
    assert len(dev_questions(path)) == len(records(path))


def test_question_ids_and_texts_are_unique_across_the_sets():
    ids, texts = {}, {}
    for path in NEWS_SETS:
        for record in records(path):
            assert record["id"] not in ids, f"{record['id']} in {path.name} and {ids.get(record['id'])}"
            ids[record["id"]] = path.name
            text = " ".join(record["question"].lower().split())
            assert text not in texts, f"{record['question']!r} in {path.name} and {texts.get(text)}"
            texts[text] = path.name


def test_the_held_out_set_is_never_tuned_on():
    assert HOLDOUT not in DEV_SETS
    assert all(path.is_file() for path in DEV_SETS)
