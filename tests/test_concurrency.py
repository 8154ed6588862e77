"""Readers and a writer at once: a real server on loopback with 8 clients asking, searching, citing
and fetching, a 9th adding, replacing and deleting, and a second server process on the same index
folder (see tests/crashkit.py; `make soak` runs it for 10 minutes)."""

import pytest
import shutil

from qa import Engine

from .conftest import make_settings
from .crashkit import article_record, run_readers_writer

# About several processes on one SQLite + FAISS index, and its read snapshots (Milvus Lite allows one process per file): the default backend only.
pytestmark = pytest.mark.sqlite_only


def test_8_readers_1_writer_and_a_second_process_for_20_seconds(tmp_path, seed_index, encoder):
    index = tmp_path / "index"
    shutil.copytree(seed_index, index)
    engine = Engine(make_settings(index, reader="rules"), encoder=encoder)
    engine.ingest_records([article_record(key, 0) for key in range(6)])
    engine.close()

    report = run_readers_writer(index, tmp_path, seconds=20, seed=7)
    figures = report.figures()
    print("readers and a writer:", figures)
    assert report.server_errors == 0, figures
    assert report.bad_offsets == 0 and report.half_written == 0, figures
    assert report.propagation_misses == 0, figures
    assert not report.other_failures, figures
    # Enough happened to mean something: writes of every kind, and reads of every kind.
    assert report.writes >= 5 and set(report.latencies) == {"ask", "search", "cite", "article"}, figures


def test_a_request_reads_one_snapshot_while_another_process_commits(fresh_engine, reopen, encoder):
    """The article, its chunks and the vectors a request reads stay those of one generation, even
    when another process commits a replacement in the middle of it."""
    other = reopen(fresh_engine)  # stands for another process: its own connection and vectors
    store, article_id = fresh_engine.store, "003_bd9df7c1096ea33d"
    query = encoder.encode(["drones over Bryansk and Kursk"])
    with store.reading():
        before = store.article(article_id).text
        hits = [chunk_id for chunk_id, _ in store.closest_chunks(query, 100)[0]]
        other.ingest_records([{"id": article_id, "text": "Replaced: nothing about drones."}])
        assert store.article(article_id).text == before
        chunks = store.chunks(hits)
        assert set(chunks) == set(hits)  # every chunk the vectors name is still there to read
        assert all(before[c.start:c.end] == c.text for c in chunks.values() if c.article_id == article_id)
    assert store.article(article_id).text == "Replaced: nothing about drones."
    with store.reading():
        after = [chunk_id for chunk_id, _ in store.closest_chunks(query, 100)[0]]
        assert set(store.chunks(after)) == set(after)
    other.close()


def test_the_encoder_serves_concurrent_requests(encoder):
    """Texts of different lengths encoded from 8 threads at once (as the API's thread pool does):
    the fast tokenizer's shared padding state once mixed two calls (a ValueError, a 500)."""
    import random
    import threading

    errors = []

    def work(number):
        rng = random.Random(number)
        for _ in range(12):
            texts = [" ".join(["word"] * rng.randint(1, 40)) for _ in range(rng.randint(1, 4))]
            try:
                assert encoder.encode(texts).shape == (len(texts), encoder.dimension)
                assert len(encoder.count_tokens(texts)) == len(texts)
            except Exception as error:  # reported below
                errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
