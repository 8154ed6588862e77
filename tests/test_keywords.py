"""Keyword search at scale: a question's common words are left out of the BM25 query, never its
two rarest, and nothing is left out of an index with fewer chunks than the limit."""

from __future__ import annotations

import dataclasses
import shutil

from qa import Engine
from qa.retrieval import Retriever
from tests.conftest import make_settings

QUESTION = "Which mobile operator did the cyber attack on Kyivstar hit in Ukraine?"


def every_term(engine: Engine) -> Retriever:
    """The engine's retriever with no limit on common words."""
    return Retriever(engine.store, engine.encoder, dataclasses.replace(engine.retriever.config, common_term_chunks=0))


def test_common_words_are_left_out_and_the_two_rarest_kept(tmp_path, seed_index, encoder):
    directory = tmp_path / "index"
    shutil.copytree(seed_index, directory)
    engine = Engine(make_settings(directory, reader="rules", keyword_common=2), encoder=encoder)
    with engine.store.reading():
        every = every_term(engine).searchable_terms(QUESTION)
        kept = engine.retriever.searchable_terms(QUESTION)
        frequencies, _ = engine.store.document_frequencies(every)
    common = [t for t in every if frequencies[t] > 2]
    rarest = sorted(every, key=lambda t: frequencies[t])[:2]
    assert common and set(kept) == {t for t in every if frequencies[t] <= 2} | set(rarest)
    assert len(engine.search(QUESTION, k=5)) == 5
    engine.close()


def test_nothing_is_left_out_below_the_limit(seed_engine):
    with seed_engine.store.reading():
        assert seed_engine.retriever.searchable_terms(QUESTION) == every_term(seed_engine).searchable_terms(QUESTION)
