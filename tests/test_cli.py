"""The `qa` command as a user runs it: one-line errors, non-zero exits, nothing half-written."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

QA = [sys.executable, "-m", "qa.cli"]


def run(args, index_dir, **kwargs):
    env = {**os.environ, "QA_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(QA + args, capture_output=True, text=True, env=env, cwd=Path(__file__).parent.parent, timeout=300, **kwargs)


def test_ingest_of_bad_bytes_names_the_file_and_writes_nothing(tmp_path, seed_index):
    index = tmp_path / "index"
    shutil.copytree(seed_index, index)
    good = tmp_path / "good.txt"
    good.write_text("A perfectly fine article about the Zorblat bridge.")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe not utf-8 \xc3\x28")
    result = run(["ingest", str(good), str(bad)], index)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "bad.txt" in result.stderr and "Traceback" not in result.stderr
    ask = run(["search", "Zorblat bridge", "--json"], index)
    assert ask.returncode == 0
    assert all(r["article_id"] != "good" for r in json.loads(ask.stdout)["results"])


def test_ingest_then_ask_as_json(tmp_path, seed_index):
    index = tmp_path / "index"
    shutil.copytree(seed_index, index)
    article = tmp_path / "bridge.md"
    article.write_text("# Bridge reopens\n\nEngineer Maria Petrenko reopened the Zorblat bridge on Monday.\n")
    assert run(["ingest", str(article)], index).returncode == 0
    result = run(["ask", "Who reopened the Zorblat bridge?", "--json"], index)
    assert result.returncode == 0, result.stderr
    best = json.loads(result.stdout)["answers"][0]
    assert best["text"] == "Maria Petrenko" and best["citation"]["title"] == "# Bridge reopens"[2:]
    text = article.read_text()
    assert text[best["citation"]["start"]:best["citation"]["end"]] == "Maria Petrenko"


def test_bad_arguments_exit_non_zero_with_one_line(tmp_path, seed_index):
    result = run(["search", "drones", "-k", "0"], seed_index)
    assert result.returncode != 0 and "k must be" in result.stderr and "Traceback" not in result.stderr


def test_an_index_of_an_older_chunker_still_answers_and_rebuild_brings_it_up_to_date(tmp_path, seed_index):
    import sqlite3

    index = tmp_path / "index"
    shutil.copytree(seed_index, index)
    with sqlite3.connect(index / "index.sqlite") as db:
        manifest = json.loads(db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()[0])
        del manifest["chunker"]  # as written before the index recorded its chunking rule
        db.execute("UPDATE meta SET value = ? WHERE key = 'manifest'", (json.dumps(manifest),))
        articles = sorted(r[0] for r in db.execute("SELECT id FROM articles"))
    search = run(["search", "drones shot down", "--json"], index)
    assert search.returncode == 0, search.stderr
    assert json.loads(search.stdout)["results"] and "qa rebuild" in search.stderr
    rebuilt = run(["rebuild"], index)
    assert rebuilt.returncode == 0, rebuilt.stderr
    with sqlite3.connect(index / "index.sqlite") as db:
        assert "chunker" in json.loads(db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()[0])
        assert sorted(r[0] for r in db.execute("SELECT id FROM articles")) == articles
    again = run(["search", "drones shot down", "--json"], index)
    assert again.returncode == 0 and "qa rebuild" not in again.stderr
    assert not list(tmp_path.glob("index.*")), "no rebuild folder or backup left behind"
