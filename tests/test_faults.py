"""Faults on the way: a full disk during a write (ENOSPC injected at the file layer, half-way through
the vector file or around it) gives 507 over HTTP and one line from the CLI; the previous index
stays whole and keeps answering."""

import json

import pytest
from fastapi.testclient import TestClient

import qa.cli
from qa import Engine
from qa.api import create_app
from qa.errors import StorageFailed
from qa.readers import make_reader

from .crashkit import inspect_index, leftovers

# About a full disk under the SQLite + FAISS files: the default backend only.
pytestmark = pytest.mark.sqlite_only

QUESTION = "How many drones did Kyiv's defences shoot down?"
NEW = {"id": "fault-1", "text": "The Zorblat bridge over the Dnipro was reopened on Monday by engineer Maria Petrenko."}


def answers(client):
    return [(a["text"], a["citation"]) for a in client.post("/ask", json={"question": QUESTION}).json()["answers"]]


@pytest.mark.parametrize("point", ["rows", "vectors-half", "vectors-renamed", "commit"])
def test_a_full_disk_during_a_write_gives_507_and_the_index_keeps_answering(fresh_engine, encoder, monkeypatch, point):
    with TestClient(create_app(fresh_engine)) as client:
        before = answers(client)
        health = client.get("/health").json()
        monkeypatch.setenv("QA_TEST_FAIL_AT", point)
        for response in (client.post("/articles", json=NEW), client.delete("/articles/003_bd9df7c1096ea33d")):
            assert response.status_code == 507, response.text
            error = response.json()["error"]
            assert error["code"] == "insufficient_storage"
            assert "No space left on device" in error["message"] and "as it was" in error["message"]
        monkeypatch.delenv("QA_TEST_FAIL_AT")
        assert answers(client) == before
        assert client.get("/health").json() == health
        assert client.get("/articles/fault-1").status_code == 404
        assert client.get("/articles/003_bd9df7c1096ea33d").status_code == 200
        # A write after the fault works, over what the failed one left.
        assert client.post("/articles", json=NEW).status_code == 201
        assert client.get("/articles/fault-1").json()["text"] == NEW["text"]
    articles = inspect_index(fresh_engine.settings.index_dir, encoder)
    assert "fault-1" in articles and "003_bd9df7c1096ea33d" in articles


def test_a_full_disk_leaves_no_file_behind_after_a_reopen(fresh_engine, encoder, monkeypatch):
    monkeypatch.setenv("QA_TEST_FAIL_AT", "vectors-renamed")  # the next generation's file is in place
    with pytest.raises(StorageFailed):
        fresh_engine.ingest_records([NEW])
    assert leftovers(fresh_engine.settings.index_dir)
    monkeypatch.delenv("QA_TEST_FAIL_AT")
    assert "fault-1" not in inspect_index(fresh_engine.settings.index_dir, encoder)  # and nothing left after it


def test_a_full_disk_during_qa_ingest_is_one_line(fresh_engine, encoder, tmp_path, monkeypatch, capsys):
    source = tmp_path / "new.jsonl"
    source.write_text(json.dumps(NEW) + "\n")
    monkeypatch.setenv("QA_INDEX_DIR", str(fresh_engine.settings.index_dir))
    monkeypatch.setenv("QA_TEST_FAIL_AT", "vectors-half")
    monkeypatch.setattr(qa.cli, "_engine", lambda settings: Engine(settings, encoder=encoder, reader=make_reader("rules", encoder)))
    assert qa.cli.main(["ingest", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qa: could not write the index in ")
    assert "No space left on device" in err
    assert "fault-1" not in inspect_index(fresh_engine.settings.index_dir, encoder)
