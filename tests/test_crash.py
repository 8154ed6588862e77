"""Crash safety: writers killed (SIGKILL) at seeded moments over the whole write, by `qa ingest`
and through a real server; SIGTERM during a write. After each, the index reopens whole and holds
every acknowledged article (see tests/crashkit.py; `make soak` runs 300 kill points)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from qa.store import WRITE_POINTS

from .crashkit import KillRunner, Server, article_record, inspect_index, leftovers, run_kill_points, seed_state

# About writes killed at each moment of the SQLite + FAISS generation switch: the default backend only.
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def index_copy(tmp_path, seed_index):
    directory = tmp_path / "index"
    shutil.copytree(seed_index, directory)
    return directory


def test_writes_killed_at_30_seeded_moments_lose_nothing_acknowledged(index_copy, tmp_path, encoder):
    report = run_kill_points(index_copy, tmp_path, encoder, kills=30, seed=12)
    assert not report.failures, report.failures
    assert (report.kills, report.reopened, report.lost, report.half) == (30, 30, 0, 0), report.summary()
    # Spread over the whole write: every named point by `qa ingest`, through the server too, and
    # random moments; some interrupted writes were kept whole, others dropped whole.
    assert {phase for how, phase in report.phases if how == "cli-point"} == set(WRITE_POINTS)
    assert {how for how, _ in report.phases} == {"cli-point", "cli-random", "http-point", "http-random"}
    assert report.outcomes["applied"] and report.outcomes["absent"], report.outcomes
    assert report.leftovers_cleaned, "no kill left a file to clean up: the points did not reach the vector file"


@pytest.mark.parametrize("point, kept", [("rows", False), ("vectors-renamed", False), ("committed", True)])
def test_sigterm_during_qa_ingest_rolls_the_write_back_or_finishes_it_then_exits(index_copy, tmp_path, encoder, point, kept):
    before = seed_state(index_copy)
    runner = KillRunner(index_copy, tmp_path, encoder, seed=1)
    change = {"gen-1": article_record(1, 1), "gen-2": article_record(2, 1)}
    code, points = runner._cli(change, f"{point}:TERM", None)
    log = (tmp_path / "child.log").read_text()
    assert code == 143, log
    assert "qa: terminated (SIGTERM)" in log
    assert points[-1][0] == point  # the signal stopped it there
    articles = inspect_index(index_copy, encoder)
    after = {**before, **{i: r["text"] for i, r in change.items()}}
    assert articles == (after if kept else before)


def test_sigterm_to_the_server_during_a_write_finishes_it_then_exits(index_copy, tmp_path, encoder):
    server = Server(index_copy, tmp_path, kill_at="rows:TERM", name="term").wait_ready()
    try:
        response = httpx.post(server.url + "/articles", json=article_record(3, 1), timeout=60)
        assert response.status_code == 201, response.text
        server.process.join(30)
        assert not server.process.is_alive(), "the server did not exit after SIGTERM"
    finally:
        server.kill()
    assert inspect_index(index_copy, encoder)["gen-3"] == article_record(3, 1)["text"]


def test_the_qa_command_killed_in_its_own_process_leaves_the_index_whole(index_copy, tmp_path, encoder):
    """The real `qa ingest` executable (not a forked child), killed just before its commit."""
    source = tmp_path / "batch.jsonl"
    source.write_text("".join(json.dumps(article_record(key, 1)) + "\n" for key in (4, 5)))
    before = seed_state(index_copy)
    env = {**os.environ, "QA_INDEX_DIR": str(index_copy), "QA_TEST_KILL_AT": "commit"}
    qa_command = Path(sys.executable).with_name("qa")
    done = subprocess.run([str(qa_command), "ingest", str(source)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert leftovers(index_copy)  # the next generation's file, never committed
    assert inspect_index(index_copy, encoder) == before
