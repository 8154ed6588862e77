"""The `qa` command as a user runs it: one-line errors, non-zero exits, nothing half-written."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

QA = [sys.executable, "-m", "qa.cli"]


def run(args, index_dir, env_extra=None, **kwargs):
    # The backend of the index in the folder (a copy of a Milvus seed index holds milvus.db).
    backend = "milvus" if (Path(index_dir) / "milvus.db").exists() else "sqlite"
    env = {**os.environ, "QA_INDEX_DIR": str(index_dir), "QA_BACKEND": backend, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
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


@pytest.mark.sqlite_only  # it edits the manifest in index.sqlite
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


def test_filter_flags(tmp_path, seed_index):
    index = tmp_path / "index"
    shutil.copytree(seed_index, index)
    one = run(["search", "drones shot down", "-k", "5", "--article", "001_9bf8dedd913fbc69", "--article", "002_3806188b7ba67ac3", "--json"], index)
    assert one.returncode == 0, one.stderr
    results = json.loads(one.stdout)["results"]
    assert len(results) == 5 and {r["article_id"] for r in results} <= {"001_9bf8dedd913fbc69", "002_3806188b7ba67ac3"}
    dated = run(["ask", "Who is the governor of the Kyiv region?", "--from", "2023-11-07", "--to", "2023-11-07", "--json"], index)
    assert dated.returncode == 0, dated.stderr
    answers = json.loads(dated.stdout)["answers"]
    assert answers and answers[0]["text"] == "Ruslan Kravchenko"  # the one dated article's governor, not Kyiv's
    assert all(a["citation"]["article_id"] == "003_bd9df7c1096ea33d" and a["citation"]["published"] == "2023-11-07" for a in answers)
    bad = run(["cite", "drones", "--source", "RTE.ie", "--from", "2023-11-7"], index)
    assert bad.returncode != 0 and "YYYY-MM-DD" in bad.stderr and bad.stderr.count("\n") == 1


@pytest.mark.sqlite_only  # qa backup copies a SQLite + FAISS folder
def test_paths_the_system_refuses_get_one_line_not_a_traceback(tmp_path, seed_index):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for args, index, said in (
        (["export", str(tmp_path / "no" / "such" / "out.jsonl")], seed_index, "no such folder"),
        (["export", str(tmp_path)], seed_index, "is a folder"),
        (["search", "drones"], a_file, "is a file"),
        (["backup", str(a_file / "under-a-file")], seed_index, "Not a directory"),
    ):
        result = run(args, index)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1 and said in result.stderr, result.stderr
    assert not list(tmp_path.glob(".*partial*")) and a_file.read_text() == "not a folder"


def test_a_question_with_no_index_and_no_corpus_is_refused_and_makes_no_folder(tmp_path):
    # qa run from another folder, or a mistyped QA_INDEX_DIR: an empty new index would answer nothing.
    index = tmp_path / "mistyped" / "index"
    result = run(["ask", "How many drones?"], index, env_extra={"QA_CORPUS_DIR": str(tmp_path / "no-corpus")})
    assert result.returncode == 2 and "no index in" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "mistyped").exists()


def test_serve_refuses_an_open_host_without_a_key(tmp_path):
    env = {"QA_HOST": "0.0.0.0", "QA_API_KEY": "", "QA_ALLOW_OPEN": ""}
    result = run(["serve"], tmp_path / "index", env_extra=env)
    assert result.returncode != 0 and "QA_API_KEY" in result.stderr and result.stderr.count("\n") == 1
