"""Keyword search over posting lists (large indexes): FTS5's BM25 formula, lists that follow
every write exactly, filters, a crash that leaves them whole, and older indexes without them."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3

import faiss
import pytest

from qa import Engine
from qa.engine import rebuild_index
from qa.errors import StorageFailed
from qa.postings import ANALYSIS, POSTING, analyse, best_chunks, postings_of
from qa.records import Filters
from qa.text import keyword_terms

from .conftest import make_settings

pytestmark = pytest.mark.sqlite_only  # Milvus keeps its own keyword index

NEW = {"id": "new-1", "text": "The Zorblat bridge over the Dnipro was reopened on Monday by engineer Maria Petrenko.\n"
       "Officials said 300 trucks crossed it within a day. The Zorblat bridge had been shut since May."}


def index_copy(tmp_path, seed_index, *statements: str):
    """A private copy of the seed index, changed by `statements` (SQL) first."""
    directory = tmp_path / "index"
    shutil.copytree(seed_index, directory)
    with sqlite3.connect(directory / "index.sqlite") as db:
        for statement in statements:
            db.execute(statement)
    return directory


# What an index of an earlier version holds: no posting lists.
EARLIER = ("DELETE FROM postings", "DELETE FROM meta WHERE key = 'postings'")


def stored_lists(directory) -> tuple[dict[str, bytes], dict[str, int]]:
    with sqlite3.connect(directory / "index.sqlite") as db:
        lists = {term: bytes(data) for term, data in db.execute("SELECT term, data FROM postings")}
        totals = json.loads(db.execute("SELECT value FROM meta WHERE key = 'postings'").fetchone()[0])
        counts = dict(db.execute("SELECT term, chunks FROM postings"))
    assert counts == {term: len(data) // POSTING.itemsize for term, data in lists.items()}
    return lists, totals


def lists_from_scratch(directory) -> tuple[dict[str, bytes], dict[str, int]]:
    with sqlite3.connect(directory / "index.sqlite") as db:
        rows = db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
    lists, chunks, words = postings_of(rows, batch=7)  # batches that split the chunks unevenly
    return {term: data.tobytes() for term, data in lists.items()}, {"chunks": chunks, "words": words, "analysis": ANALYSIS}


def test_the_lists_follow_adds_replacements_and_deletions_as_if_built_from_scratch(fresh_engine):
    directory = fresh_engine.settings.index_dir
    assert stored_lists(directory) == lists_from_scratch(directory)
    fresh_engine.ingest_records([NEW])
    fresh_engine.ingest_records([{**NEW, "text": "Replaced: the Quentor dam on the Dnipro held."}])
    fresh_engine.delete("003_bd9df7c1096ea33d")
    lists, totals = stored_lists(directory)
    assert (lists, totals) == lists_from_scratch(directory)
    assert "zorblat" not in lists and "quentor" in lists
    assert totals["chunks"] == fresh_engine.health()["chunks"]


def test_scores_are_fts5s_bm25_over_the_services_terms():
    texts = ["Drones struck Kyiv. Kyiv said 30 drones were shot down.",
             "A drone hit a power plant near Odesa.",
             "Talks in Geneva ended without a deal on grain.",
             "Kyiv and Odesa both lost power overnight after strikes on the grid."]
    lists, chunks, words = postings_of(enumerate(texts, start=1))
    query = [t for t in dict.fromkeys(keyword_terms("kyiv drones power"))]
    got = best_chunks({t: lists[t].tobytes() for t in ("kyiv", "drone", "power")}, chunks, words, 10)
    # The formula written out: FTS5's bm25() with k1 = 1.2, b = 0.75 and its clamped idf.
    average = words / chunks
    expected = {}
    for number, text in enumerate(texts, start=1):
        counts, length = analyse(text)
        score = 0.0
        for term in ("kyiv", "drone", "power"):
            holding = sum(term in analyse(t)[0] for t in texts)
            idf = max(math.log((chunks - holding + 0.5) / (holding + 0.5)), 1e-6)
            tf = counts.get(term, 0)
            score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / average))
        if score > 0:
            expected[number] = score
    assert query == ["kyiv", "drones", "power"]
    assert [chunk for chunk, _ in got] == sorted(expected, key=lambda c: -expected[c])
    assert dict(got) == pytest.approx(expected, rel=1e-5)
    assert best_chunks({t: lists[t].tobytes() for t in ("kyiv", "drone", "power")}, chunks, words, 2) == got[:2]


def test_postings_search_finds_the_chunks_fts5_finds(tmp_path, seed_index, encoder):
    directory = index_copy(tmp_path, seed_index)
    questions = ["Kyivstar cyber attack", "How many drones over Bryansk and Kursk?", "Which operator lost its network?",
                 "Who leads the Russian delegation in the talks?", "What did the air force say about the missiles?"]
    found = {}
    for search in ("fts5", "postings"):
        engine = Engine(make_settings(directory, reader="rules", keyword_search=search), encoder=encoder)
        with engine.store.reading():
            found[search] = [engine.store.keyword_chunks(keyword_terms(q), 10) for q in questions]
        engine.close()
    for fts5, lists in zip(found["fts5"], found["postings"]):
        assert lists and fts5
        assert lists[0][0] == fts5[0][0]
        assert len({c for c, _ in lists} & {c for c, _ in fts5}) >= 0.8 * len(fts5)
        assert [s for _, s in lists[:3]] == pytest.approx([s for _, s in fts5[:3]], rel=0.05)


def test_auto_reads_the_lists_from_the_size_the_vectors_turn_approximate(tmp_path, seed_index, encoder):
    directory = index_copy(tmp_path, seed_index)
    terms = keyword_terms("Kyivstar mobile operator cyber attack")
    results = {}
    for name, overrides in {"fts5": {"keyword_search": "fts5"}, "postings": {"keyword_search": "postings"},
                            "auto-small": {}, "auto-large": {"approximate_from": 10}}.items():
        engine = Engine(make_settings(directory, reader="rules", **overrides), encoder=encoder)
        with engine.store.reading():
            results[name] = engine.store.keyword_chunks(terms, 5)
        engine.close()
    assert results["fts5"] != results["postings"]  # the scores differ a little: other words, other stems
    assert results["auto-small"] == results["fts5"]
    assert results["auto-large"] == results["postings"]


def test_a_filter_restricts_the_lists_search(tmp_path, seed_index, encoder):
    directory = index_copy(tmp_path, seed_index)
    engine = Engine(make_settings(directory, reader="rules", keyword_search="postings"), encoder=encoder)
    keep = Filters(article_ids=("002_3806188b7ba67ac3",))
    with engine.store.reading():
        everything = engine.store.keyword_chunks(keyword_terms("drones attack Ukraine"), 1000)
        kept = engine.store.keyword_chunks(keyword_terms("drones attack Ukraine"), 5, keep)
        allowed = set(engine.store.allowed_chunks(keep).tolist())
    assert len(kept) == 5 and {c for c, _ in everything} - allowed
    assert kept == [(c, score) for c, score in everything if c in allowed][:5]  # the same scores, in order
    results = engine.search("drones attack Ukraine", 5, filters=keep)
    assert results and {r.article_id for r in results} == {"002_3806188b7ba67ac3"}
    engine.close()


def test_a_failed_write_leaves_the_lists_as_they_were(fresh_engine, monkeypatch):
    directory = fresh_engine.settings.index_dir
    before = stored_lists(directory)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(StorageFailed):
        fresh_engine.ingest_records([NEW])
    monkeypatch.undo()
    assert stored_lists(directory) == before


def test_an_older_index_searches_fts5_until_given_its_lists(tmp_path, seed_index, encoder):
    directory = index_copy(tmp_path, seed_index, *EARLIER)
    engine = Engine(make_settings(directory, reader="rules", keyword_search="postings"), encoder=encoder)
    terms = keyword_terms("Kyivstar mobile operator")
    with engine.store.reading():
        fts5 = engine.store.keyword_chunks(terms, 5)
    assert fts5  # FTS5 answers meanwhile
    engine.ingest_records([NEW])  # a write keeps no half lists
    with sqlite3.connect(directory / "index.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM postings").fetchone()[0] == 0
    seen = []
    assert engine.store.add_postings(progress=seen.append) is True
    assert seen == [0]
    assert stored_lists(directory) == lists_from_scratch(directory)
    assert engine.store.add_postings() is False
    with engine.store.reading():
        lists = engine.store.keyword_chunks(terms, 5)
    assert lists != fts5 and lists[0][0] == fts5[0][0]
    engine.close()


def test_document_frequencies_come_from_the_lists(tmp_path, seed_index, encoder):
    directory = index_copy(tmp_path, seed_index)
    engine = Engine(make_settings(directory, reader="rules", keyword_search="postings"), encoder=encoder)
    with engine.store.reading():
        counts, total = engine.store.document_frequencies(["kyivstar", "drones", "zyxwvut"])
    lists, totals = stored_lists(directory)
    assert total == totals["chunks"] == engine.health()["chunks"]
    assert counts == {"kyivstar": len(lists["kyivstar"]) // 8, "drones": len(lists["drone"]) // 8, "zyxwvut": 0}
    assert counts["drones"] > 1
    engine.close()


def test_qa_rebuild_gives_an_older_index_its_lists(tmp_path, seed_index, encoder):
    directory = index_copy(tmp_path, seed_index, *EARLIER)
    rebuild_index(make_settings(directory, chunk_tokens=100), encoder=encoder)
    lists, totals = stored_lists(directory)
    assert (lists, totals) == lists_from_scratch(directory) and totals["chunks"] > 60  # the new, smaller chunks


def test_joined_words_are_found_by_their_parts():
    counts, length = analyse("The 1994-95 season: X-59 flights and O'Brien's 4.5 m jump.")
    assert {"1994-95", "1994", "95", "x-59", "59", "4.5", "4", "5", "flight"} <= set(counts) and length == 10
    lists, chunks, words = postings_of([(1, "Prices fell in 1994-95."), (2, "Prices rose in 1996.")])
    assert best_chunks({"1994": lists["1994"].tobytes()}, chunks, words, 5)[0][0] == 1


def test_lists_of_another_analysis_are_not_read_and_are_replaced(tmp_path, seed_index, encoder):
    directory = index_copy(tmp_path, seed_index,  # lists an earlier analysis made
                           "UPDATE postings SET data = x'' WHERE term = 'kyivstar'",
                           "UPDATE meta SET value = json_set(value, '$.analysis', 0) WHERE key = 'postings'")
    engine = Engine(make_settings(directory, reader="rules", keyword_search="postings"), encoder=encoder)
    with engine.store.reading():
        assert engine.store.keyword_chunks(["kyivstar"], 5)  # FTS5 reads it meanwhile
    engine.ingest_records([NEW])  # and a write leaves the foreign lists alone
    with sqlite3.connect(directory / "index.sqlite") as db:
        assert json.loads(db.execute("SELECT value FROM meta WHERE key = 'postings'").fetchone()[0])["analysis"] == 0
    assert engine.store.add_postings() is True
    assert stored_lists(directory) == lists_from_scratch(directory)
    engine.close()


def test_opening_an_index_reads_its_chunks_once_in_the_background_when_they_fit(tmp_path, seed_index, monkeypatch):
    import os
    import threading

    from qa import store

    directory = index_copy(tmp_path, seed_index)
    path = directory / "index.sqlite"

    def read_bytes() -> int:
        return int(dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())["rchar"])

    def warmed() -> int:
        before = read_bytes()
        store._warm_page_cache(lambda: sqlite3.connect(path), path)
        for thread in threading.enumerate():
            if thread.name == "qa-warm-cache":
                thread.join(10)
        return read_bytes() - before

    with sqlite3.connect(path) as db:
        texts = db.execute("SELECT sum(length(text)) FROM chunks").fetchone()[0]
    assert warmed() >= texts
    monkeypatch.setattr(os, "sysconf", lambda name: 1 if name == "SC_AVPHYS_PAGES" else 4096)  # no memory free
    assert warmed() < texts
