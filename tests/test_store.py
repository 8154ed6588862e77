"""The index on disk: replace, delete, restart, atomic saves, one writer, the manifest check."""

import threading

import faiss
import pytest

from qa import Engine
from qa.errors import IndexMismatch, NotFound, StorageFailed

from .conftest import make_settings

NEW = {"id": "new-1", "text": "The Zorblat bridge over the Dnipro was reopened on Monday by engineer Maria Petrenko.\n"
       "Officials said 300 trucks crossed it within a day."}


def test_added_articles_survive_a_restart_and_deleted_ones_do_not(fresh_engine, reopen):
    fresh_engine.ingest_records([NEW])
    fresh_engine.delete("003_bd9df7c1096ea33d")
    again = reopen(fresh_engine)
    assert again.article("new-1").text == NEW["text"]
    with pytest.raises(NotFound):
        again.article("003_bd9df7c1096ea33d")
    assert "Zorblat" in again.search("Zorblat bridge", 1)[0].text
    assert all(r.article_id != "003_bd9df7c1096ea33d" for r in again.search("Bryansk and Kursk drones", 20))
    assert again.health()["articles"] == 5


def test_ingesting_an_id_again_replaces_it(fresh_engine):
    chunks_before = fresh_engine.health()["chunks"]
    fresh_engine.ingest_records([NEW])
    report = fresh_engine.ingest_records([{**NEW, "text": "Replaced text about the Quentor dam."}])
    assert report.replaced == ("new-1",)
    assert fresh_engine.article("new-1").text == "Replaced text about the Quentor dam."
    assert not any("Zorblat" in r.text for r in fresh_engine.search("Zorblat bridge", 10))
    assert fresh_engine.health()["chunks"] == chunks_before + 1


@pytest.mark.sqlite_only  # FAISS's file write fails
def test_a_crash_while_saving_leaves_the_previous_index_readable(fresh_engine, reopen, monkeypatch):
    before = fresh_engine.health()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(StorageFailed, match="disk full"):
        fresh_engine.ingest_records([NEW])
    monkeypatch.undo()
    again = reopen(fresh_engine)
    assert again.health()["articles"] == before["articles"]
    assert again.health()["chunks"] == before["chunks"]
    with pytest.raises(NotFound):
        again.article("new-1")
    assert again.search("Kyivstar", 1)[0].article_id == "002_3806188b7ba67ac3"


def test_another_process_change_is_seen_by_the_next_request(fresh_engine, reopen):
    other = reopen(fresh_engine)  # stands for a CLI ingest beside a running service
    other.ingest_records([NEW])
    assert "Zorblat" in fresh_engine.search("Zorblat bridge", 1)[0].text


def test_readers_during_a_write_see_a_consistent_index(fresh_engine):
    errors, counts = [], []

    def read():
        try:
            for _ in range(15):
                results = fresh_engine.search("drone attack on Kyiv", 5)
                assert results and all(r.text for r in results)
                counts.append(fresh_engine.health()["articles"])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    for n in range(3):
        fresh_engine.ingest_records([{**NEW, "id": f"new-{n}"}])
    for thread in readers:
        thread.join()
    assert not errors
    assert set(counts) <= {5, 6, 7, 8}


def test_an_index_of_another_model_is_refused(fresh_engine, encoder):
    class OtherModel:
        name = "some/other-model"
        dimension = 384

        def encode(self, texts):  # never called: the index is refused first
            raise AssertionError

        count_tokens = encode

    with pytest.raises(IndexMismatch, match="other-model"):
        Engine(make_settings(fresh_engine.settings.index_dir), encoder=OtherModel())
    with pytest.raises(IndexMismatch, match="chunk_tokens"):
        Engine(make_settings(fresh_engine.settings.index_dir, chunk_tokens=100), encoder=encoder)


def test_document_frequencies_follow_writes(fresh_engine):
    store = fresh_engine.store
    with store.reading():
        before, total = store.document_frequencies(["kyivstar", "zyxwvut"])
    assert before["kyivstar"] > 0 and before["zyxwvut"] == 0
    fresh_engine.ingest_records([{"id": "rare", "text": "Zyxwvut is a made-up word. Kyivstar is not."}])
    with store.reading():
        after, total_after = store.document_frequencies(["kyivstar", "zyxwvut"])
    assert after == {"kyivstar": before["kyivstar"] + 1, "zyxwvut": 1}
    assert total_after == total + 1
