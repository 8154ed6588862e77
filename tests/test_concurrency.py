"""Readers and a writer at once: a real server on loopback with 8 clients asking, searching, citing
and fetching, a 9th adding, replacing and deleting, and a second server process on the same index
folder (see tests/crashkit.py; `make soak` runs it for 10 minutes)."""

import shutil

from qa import Engine

from .conftest import make_settings
from .crashkit import article_record, run_readers_writer


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
    assert report.writes >= 10 and set(report.latencies) == {"ask", "search", "cite", "article"}, figures
