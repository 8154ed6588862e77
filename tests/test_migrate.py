"""Moving an index between backends (`qa migrate`, `qa export` / `qa import`), and what the Milvus
backend does beyond the shared tests: texts longer than a VARCHAR, a write that stops half-way,
one process per Milvus Lite file, and bad settings. Real Milvus Lite, real model."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qa.cli
from qa import Engine
from qa.backends import open_stored
from qa.backup import migrate_index
from qa.engine import rebuild_index
from qa.errors import BadInput, Busy, IndexMismatch, Unavailable

from .conftest import make_settings

# The source of each move is the default backend's seed index.
pytestmark = pytest.mark.sqlite_only

QUESTIONS = ["How many drones did Kyiv's defences shoot down?", "Which telecoms operator did Russian hackers break into?",
             "Who is the head of the SBU's cybersecurity department?"]


def contents(settings):
    """Every article, chunk and vector of an index, as its backend gives them back."""
    store = open_stored(settings, maintenance=False)
    try:
        articles, chunks, vectors = [], [], []
        for batch_articles, batch_chunks, batch_vectors in store.dump():
            articles += batch_articles
            chunks += batch_chunks
            vectors.append(batch_vectors)
        return articles, chunks, np.concatenate(vectors)
    finally:
        store.close()


def best_answers(engine):
    return [[(a.text, a.citation.article_id, a.citation.start, a.citation.end) for a in engine.ask(q, 1)] for q in QUESTIONS]


@pytest.fixture
def source(tmp_path, seed_index, encoder):
    directory = tmp_path / "source"
    shutil.copytree(seed_index, directory)
    engine = Engine(make_settings(directory), encoder=encoder)
    engine.ingest_records([{"id": "odd/1 é", "text": "Line one\u2028still line one and the Quorvex reservoir 🛰️ holds 40 megalitres.",
                            "title": "Awkward 🛰️", "published": "2024-02-29", "source": "RTÉ \"quoted\"", "url": "https://example.org/a?b=1"}])
    yield engine
    engine.close()


def test_migrate_to_milvus_and_back_carries_every_article_chunk_and_vector(source, tmp_path, encoder, monkeypatch, capsys):
    original = contents(source.settings)
    before = best_answers(source)
    monkeypatch.setenv("QA_INDEX_DIR", str(source.settings.index_dir))
    monkeypatch.setenv("QA_BACKEND", "sqlite")
    source.close()  # `qa migrate` runs as its own command, beside no service
    lite = tmp_path / "lite" / "milvus.db"
    assert qa.cli.main(["migrate", f"milvus:{lite}"]) == 0
    assert capsys.readouterr().out == f"migrated 6 articles, {len(original[1])} chunks to milvus:{lite}\n"

    on_milvus = make_settings(tmp_path / "lite", backend="milvus", milvus_uri=str(lite))
    moved = contents(on_milvus)
    assert moved[0] == original[0]  # texts, titles, dates, sources, urls and excluded spans, exactly
    assert moved[1] == original[1]  # the same chunks at the same offsets
    assert np.allclose(moved[2], original[2], atol=1e-6)  # vectors carried over, not re-embedded
    engine = Engine(on_milvus, encoder=encoder)
    try:
        assert engine.health()["backend"] == "milvus" and engine.health()["articles"] == 6
        answers = best_answers(engine)
        # The same answers as before the move (what they are is the reader's business, not this
        # test's: tests/test_engine.py checks them).
        assert all(answers) and [a[0][0] for a in answers] == [a[0][0] for a in before]
        for (text, article_id, start, end), in answers:
            assert engine.article(article_id).text[start:end] == text
    finally:
        engine.close()

    back = tmp_path / "back"
    migrate_index(on_milvus, make_settings(back, backend="sqlite"))
    returned = contents(make_settings(back, backend="sqlite"))
    assert returned[0] == original[0] and returned[1] == original[1]
    assert np.allclose(returned[2], original[2], atol=1e-6)
    again = Engine(make_settings(back, backend="sqlite"), encoder=encoder)
    first = Engine(make_settings(source.settings.index_dir), encoder=encoder)
    try:
        assert best_answers(again) == best_answers(first)  # the same store, the same answers
    finally:
        again.close()
        first.close()


def test_migrate_refuses_a_target_that_holds_articles_and_bad_targets(source, tmp_path, monkeypatch, capsys):
    source.close()
    target = make_settings(tmp_path / "target", backend="milvus")
    migrate_index(source.settings, target)
    with pytest.raises(BadInput, match="empty"):
        migrate_index(source.settings, target)
    monkeypatch.setenv("QA_INDEX_DIR", str(source.settings.index_dir))
    monkeypatch.setenv("QA_BACKEND", "sqlite")
    for bad in ("postgres:/x", "milvus:", "nothing"):
        assert qa.cli.main(["migrate", bad]) == 2
        error = capsys.readouterr().err
        assert error.startswith("qa: ") and error.count("\n") == 1 and "sqlite:FOLDER" in error


def test_export_from_milvus_and_import_into_milvus_keep_every_article_exactly(source, tmp_path, encoder, monkeypatch):
    source.close()
    first = make_settings(tmp_path / "first", backend="milvus")
    migrate_index(source.settings, first)
    exported = tmp_path / "articles.jsonl"
    monkeypatch.setenv("QA_BACKEND", "milvus")
    monkeypatch.setenv("QA_INDEX_DIR", str(first.index_dir))
    assert qa.cli.main(["export", str(exported)]) == 0
    records = [json.loads(line) for line in exported.read_text(encoding="ascii").splitlines()]
    assert len(records) == 6 and next(r for r in records if r["id"] == "odd/1 é")["source"] == "RTÉ \"quoted\""
    monkeypatch.setenv("QA_INDEX_DIR", str(tmp_path / "second"))
    monkeypatch.setattr(qa.cli, "_engine", lambda settings: Engine(settings, encoder=encoder))
    assert qa.cli.main(["import", str(exported)]) == 0
    assert contents(make_settings(tmp_path / "second"))[0] == contents(first)[0]
    with pytest.raises(BadInput, match="qa migrate"):
        qa.backup.backup_index(first, tmp_path / "copy")


@pytest.fixture
def milvus_engine(tmp_path, encoder):
    engine = Engine(make_settings(tmp_path / "index", backend="milvus"), encoder=encoder)
    yield engine
    engine.close()


def test_a_text_longer_than_a_varchar_is_stored_whole_and_found_at_its_offsets(milvus_engine, reopen):
    # 30,000 four-byte characters are 120 kB: two VARCHARs' worth, split into pieces.
    filler = "🛰️ " * 15_000
    text = f"{filler}\n\nThe Velmora lighthouse was relit on Sunday by keeper Ansel Brock.\n\n{filler}"
    milvus_engine.ingest_records([{"id": "long", "text": text, "title": "Lighthouse 🛰️" * 2000}])
    again = reopen(milvus_engine)
    try:
        article = again.article("long")
        assert article.text == text and article.title == "Lighthouse 🛰️" * 2000
        [best] = again.search("Velmora lighthouse keeper", 1)
        assert best.article_id == "long" and text[best.start:best.end] == best.text and "Ansel Brock" in best.text
        [answer] = again.ask("Who relit the Velmora lighthouse?", 1)
        assert answer.text == "Ansel Brock" and text[answer.citation.start:answer.citation.end] == "Ansel Brock"
    finally:
        again.close()


def test_a_write_that_stops_half_way_is_finished_by_the_next_open(milvus_engine, reopen, monkeypatch):
    milvus_engine.ingest_records([{"id": "n1", "text": "The Zorblat bridge reopened on Monday."}])
    store = milvus_engine.store
    real_delete = store._client.delete

    def lost_connection(collection, **kwargs):
        if collection.endswith("_chunks"):
            raise Unavailable("milvus_failed", "connection lost")
        return real_delete(collection, **kwargs)

    monkeypatch.setattr(store._client, "delete", lost_connection)
    with pytest.raises(Unavailable):
        milvus_engine.ingest_records([{"id": "n1", "text": "The Quentor dam was opened on Friday."}])
    monkeypatch.undo()
    # The article switched whole to its new version; the old version's chunks are never served.
    assert milvus_engine.article("n1").text == "The Quentor dam was opened on Friday."
    assert not any("Zorblat" in p.text for p in milvus_engine.search("Zorblat bridge", 10))
    again = reopen(milvus_engine)  # the next open reads the journal and removes the old version
    try:
        rows = again.store._client.query(again.store.names["chunks"], filter='article_id == "n1"', output_fields=["text"])
        assert [row["text"] for row in rows] == ["The Quentor dam was opened on Friday."]
        assert again.store._meta("pending") is None
    finally:
        again.close()


def test_a_milvus_lite_file_open_in_another_process_is_refused_with_one_line(milvus_engine, tmp_path):
    lite = milvus_engine.settings.index_dir / "milvus.db"
    environment = {**os.environ, "QA_BACKEND": "milvus", "QA_INDEX_DIR": str(milvus_engine.settings.index_dir), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "qa.cli", "export", str(tmp_path / "x.jsonl")], capture_output=True, text=True,
                            env=environment, cwd=Path(__file__).parent.parent, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and str(lite) in result.stderr and "one process" in result.stderr
    assert (lite.parent / ".milvus.db.lock").exists()  # the refused process left the holder's lock alone
    assert milvus_engine.health()["articles"] == 0


@pytest.mark.parametrize("overrides, message", [
    ({"backend": "postgres"}, "QA_BACKEND='postgres'"),
    ({"backend": "milvus", "milvus_uri": "/tmp/bad name!.db"}, "a Milvus Lite file name"),
    ({"backend": "milvus", "milvus_prefix": "no-dashes"}, "QA_MILVUS_PREFIX"),
    ({"backend": "milvus", "milvus_index": "DISKANN"}, "QA_MILVUS_INDEX"),
])
def test_bad_backend_settings_are_bad_input(tmp_path, encoder, overrides, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        Engine(make_settings(tmp_path / "index", **overrides), encoder=encoder)


def test_an_unreachable_milvus_server_is_unavailable(tmp_path, encoder, monkeypatch):
    import qa.backends.milvus

    monkeypatch.setattr(qa.backends.milvus, "CONNECT_SECONDS", 2.0)  # nothing listens: no need to wait 30 s
    with pytest.raises((Unavailable, Busy)) as raised:
        Engine(make_settings(tmp_path / "index", backend="milvus", milvus_uri="http://127.0.0.1:9"), encoder=encoder)
    assert "127.0.0.1:9" in raised.value.message


def test_qa_rebuild_on_milvus_takes_up_new_chunking_in_place(source, tmp_path, encoder):
    source.close()
    settings = make_settings(tmp_path / "index", backend="milvus")
    migrate_index(source.settings, settings)
    before = Engine(settings, encoder=encoder)
    chunks_before = before.health()["chunks"]
    before.close()
    with pytest.raises(IndexMismatch, match="chunk_tokens"):
        Engine(make_settings(tmp_path / "index", backend="milvus", chunk_tokens=100), encoder=encoder)
    report = rebuild_index(make_settings(tmp_path / "index", backend="milvus", chunk_tokens=100), encoder=encoder)
    assert len(report.replaced) == 6
    after = Engine(make_settings(tmp_path / "index", backend="milvus", chunk_tokens=100), encoder=encoder)
    try:
        assert after.health()["articles"] == 6 and after.health()["chunks"] == report.chunks > chunks_before
        assert after.ask("How many drones did Kyiv's defences shoot down?", 1)[0].text == "7"
    finally:
        after.close()


@pytest.mark.parametrize("fusion", ["hybrid-rrf", "hybrid-weighted"])
def test_milvus_own_hybrid_search_is_a_fusion_to_choose_and_sqlite_refuses_it(source, tmp_path, encoder, fusion):
    source.close()
    settings = make_settings(tmp_path / "index", backend="milvus", fusion=fusion)
    migrate_index(source.settings, settings)
    engine = Engine(settings, encoder=encoder)
    try:
        results = engine.search("Kyivstar", 3)
        assert len(results) == 3
        # Its weighted ranker ranks badly on Lite 2.5.1 (docs/measurements.md); its RRF finds the name.
        assert fusion == "hybrid-weighted" or "Kyivstar" in results[0].text
        assert all(engine.article(r.article_id).text[r.start:r.end] == r.text for r in results)
    finally:
        engine.close()
    on_sqlite = Engine(make_settings(source.settings.index_dir, fusion=fusion), encoder=encoder)
    try:
        with pytest.raises(BadInput, match="QA_BACKEND=milvus"):
            on_sqlite.search("Kyivstar", 3)
    finally:
        on_sqlite.close()
