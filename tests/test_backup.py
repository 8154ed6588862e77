"""Backups: `qa export` / `qa import` and `qa backup` of a live index restore every article as
stored, with the same answers."""

import contextlib
import json
import sqlite3
import threading

import pytest

import qa.cli
from qa import Engine
from qa.backup import backup_index, export_articles
from qa.errors import BadInput

from .conftest import make_settings
from .crashkit import article_record, inspect_index

# About copies of the SQLite + FAISS folder (the Milvus backend's export, import and migration: tests/test_migrate.py): the default backend only.
pytestmark = pytest.mark.sqlite_only

QUESTIONS = ["How many drones did Kyiv's defences shoot down?", "Who is the head of the SBU's cybersecurity department?",
             "How many megalitres of water does the Quorvex reservoir hold?"]

# Texts that a careless export or import would change: line and paragraph separators (which
# str.splitlines() splits on), CRLF, a form feed, emoji, combining marks, and metadata.
AWKWARD = [
    {"id": "odd/1 é", "text": "Line one\u2028still line one\u2029and \r\n a CRLF, a \x0c form feed.\n\nEmoji 🛰️ and e\u0301.",
     "title": "Awkward 🛰️", "published": "2024-02-29", "source": "RTÉ", "url": "https://example.org/a?b=1&c=ü"},
    article_record(0, 1),
]


def state(index):
    with contextlib.closing(sqlite3.connect(index / "index.sqlite")) as db:
        return {row[0]: row[1:] for row in db.execute("SELECT id, text, title, published, source, url, excluded FROM articles")}


def answers(engine):
    return [[(a.text, a.score, a.citation, a.context) for a in engine.ask(q)] for q in QUESTIONS]


@pytest.fixture
def full_engine(fresh_engine):
    fresh_engine.ingest_records(AWKWARD)
    return fresh_engine


def test_export_then_import_into_an_empty_index_gives_every_article_and_the_same_answers(
        full_engine, encoder, tmp_path, monkeypatch, capsys):
    exported = tmp_path / "articles.jsonl"
    monkeypatch.setenv("QA_INDEX_DIR", str(full_engine.settings.index_dir))
    assert qa.cli.main(["export", str(exported)]) == 0
    assert capsys.readouterr().out == f"exported 7 articles to {exported}\n"
    lines = exported.read_text(encoding="ascii").split("\n")  # ASCII: no separator inside a line
    assert len(lines) == 8 and lines[-1] == ""
    records = [json.loads(line) for line in lines if line]
    assert next(r for r in records if r["id"] == "odd/1 é") == AWKWARD[0]  # exactly, with its metadata

    restored = tmp_path / "restored"
    monkeypatch.setenv("QA_INDEX_DIR", str(restored))
    monkeypatch.setattr(qa.cli, "_engine", lambda settings: Engine(settings, encoder=encoder, reader=full_engine.reader))
    assert qa.cli.main(["import", str(exported)]) == 0
    assert state(restored) == state(full_engine.settings.index_dir)
    engine = Engine(make_settings(restored), encoder=encoder, reader=full_engine.reader)
    assert answers(engine) == answers(full_engine)
    engine.close()


def test_a_backup_restores_every_article_and_the_same_answers(full_engine, encoder, tmp_path, monkeypatch, capsys):
    target = tmp_path / "backup"
    monkeypatch.setenv("QA_INDEX_DIR", str(full_engine.settings.index_dir))
    assert qa.cli.main(["backup", str(target)]) == 0
    assert capsys.readouterr().out.startswith("backed up 7 articles (generation ")
    assert state(target) == state(full_engine.settings.index_dir)
    engine = Engine(make_settings(target), encoder=encoder, reader=full_engine.reader)
    assert answers(engine) == answers(full_engine)
    engine.close()
    with pytest.raises(BadInput, match="not an empty folder"):
        backup_index(full_engine.settings.index_dir, target)


def test_backups_and_exports_taken_during_writes_are_consistent(fresh_engine, encoder, tmp_path):
    """Each copy is one state the writer left, whole: never a write half in it."""
    states, done = [state(fresh_engine.settings.index_dir)], threading.Event()
    writes = [[article_record(key, version) for key in range(3)] for version in range(1, 9)]
    errors = []

    def write():
        try:
            for batch in writes:
                fresh_engine.ingest_records(batch)
                states.append(state(fresh_engine.settings.index_dir))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    copies = 0
    while not done.is_set() or copies < 2:
        target = tmp_path / f"backup-{copies}"
        backup_index(fresh_engine.settings.index_dir, target)
        export_articles(fresh_engine.settings.index_dir, tmp_path / f"export-{copies}.jsonl")
        copies += 1
    writer.join()
    assert not errors
    texts = [{i: row[0] for i, row in s.items()} for s in states]
    for number in range(copies):
        assert {i: t for i, (t, *_) in state(tmp_path / f"backup-{number}").items()} in texts
        inspect_index(tmp_path / f"backup-{number}", encoder)
        exported = [json.loads(line) for line in (tmp_path / f"export-{number}.jsonl").read_text().splitlines()]
        assert {r["id"]: r["text"] for r in exported} in texts
    assert copies >= 2


def test_copies_left_by_a_killed_backup_or_export_are_removed_by_the_next(full_engine, tmp_path):
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    child.wait()  # its pid is now free: what a SIGKILLed `qa backup` leaves behind
    dead, live = child.pid, subprocess.os.getppid()  # another process, still running
    for pid in (dead, live):
        (tmp_path / f".backup.partial-{pid}").mkdir()
        (tmp_path / f".backup.partial-{pid}" / "index.sqlite").write_bytes(b"half")
        (tmp_path / f".export.jsonl.partial-{pid}").write_text("{\n")
    backup_index(full_engine.settings.index_dir, tmp_path / "backup")
    export_articles(full_engine.settings.index_dir, tmp_path / "export.jsonl")
    left = sorted(p.name for p in tmp_path.iterdir() if ".partial-" in p.name)
    assert left == [f".backup.partial-{live}", f".export.jsonl.partial-{live}"]
    assert state(tmp_path / "backup") == state(full_engine.settings.index_dir)
