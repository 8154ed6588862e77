"""`qa eval` over question files: the throwaway index it reads each kind of file over, and the
report it gives (real model, real index, the default reader)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.errors import BadInput
from qa.evaluate import dev_engine, dev_questions, evaluate_file

from .conftest import ROOT, make_settings

SQUAD_SAMPLE = ROOT / "tests" / "data" / "squad-train-sample.json"


def test_a_squad_file_is_read_over_its_own_articles_in_a_folder_that_goes_away(tmp_path, encoder):
    settings = make_settings(tmp_path / "unused")
    with dev_engine(SQUAD_SAMPLE, settings, encoder=encoder) as engine:
        folder = Path(engine.settings.index_dir)
        titles = {a["title"].replace("_", " ") for a in json.loads(SQUAD_SAMPLE.read_text())["data"]}
        assert {a.title for a in engine.list_articles(limit=100).articles} == titles
        assert folder.is_dir() and folder != tmp_path / "unused"
    assert not folder.exists()
    questions = dev_questions(SQUAD_SAMPLE)
    assert len(questions) == 195 and all(q.paragraph is not None for q in questions)


def test_news_questions_are_scored_over_the_corpus(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text(
        json.dumps({"id": "t1", "question": "Which telecoms operator did Russian hackers break into?",
                    "answers": ["Kyivstar"], "article": "002_3806188b7ba67ac3.txt"}) + "\n"
        + json.dumps({"id": "t2", "question": "What is the capital of France?", "answers": []}) + "\n",
        encoding="utf-8")
    report = evaluate_file(path, make_settings(tmp_path / "unused"))
    assert report["questions"] == 2 and report["answerable"] == 1
    assert report["exact_match"] == 1.0 and report["citation_accuracy"] == 1.0
    assert report["unanswerable_abstained"] == 1
    answered = int(report["offsets_exact"].split("/")[1])
    assert answered >= 1 and report["offsets_exact"] == f"{answered}/{answered}"
    assert not (tmp_path / "unused").exists()  # the configured index is never touched


def test_a_citation_file_is_scored_as_citations(tmp_path):
    path = tmp_path / "cite.jsonl"
    path.write_text((ROOT / "data" / "cite_dev.jsonl").read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    report = evaluate_file(path, make_settings(tmp_path / "unused"))
    assert report["items"] == 1 and "questions" not in report  # read as citations, not as news questions
    assert report["found"] == 1.0 and report["offsets_exact"] == 1.0


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        evaluate_file(tmp_path / "absent.jsonl", make_settings(tmp_path / "unused"))


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe not utf-8", "not a question set"),
    (b'{"id": "a", "text": "an article, not a question"}\n', "not a question set"),
    (b'{"question": 5}\n', "not a question set"),
    (b'{"kind": "exact"}\n', "not a question set"),
    (b"\n\n", "holds no questions"),
])
def test_a_file_that_is_no_question_set_is_refused_before_any_index_is_built(tmp_path, content, message, monkeypatch):
    path = tmp_path / "set.jsonl"
    path.write_bytes(content)
    monkeypatch.setattr("qa.evaluate.dev_engine", None)  # reading the file must fail first
    with pytest.raises(BadInput, match=message):
        evaluate_file(path, make_settings(tmp_path / "unused"))


def test_a_limit_below_one_is_refused(tmp_path):
    with pytest.raises(BadInput, match="at least 1"):
        evaluate_file(ROOT / "data" / "news_dev.jsonl", make_settings(tmp_path / "unused"), limit=0)
