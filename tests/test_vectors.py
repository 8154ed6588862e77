"""The approximate vector index: chosen by the index's size, and add, replace and delete across
generations, on real text vectors (the SQuAD dev part's paragraphs and the seed articles)."""

from __future__ import annotations

import numpy as np
import pytest

from qa import Engine
from qa import vectors as vector_index
from qa.evaluate import load_squad
from qa.records import Article
from tests.conftest import ROOT, make_settings

SQUAD = ROOT / "data" / "squad" / "dev-v2.0-part.json"


def paragraphs() -> list[Article]:
    """Every paragraph of the SQuAD dev part as an article of its own: 61 real texts."""
    articles, _ = load_squad(SQUAD)
    return [Article(id=f"{a.id}-{n}", text=p, title=a.title) for a in articles for n, p in enumerate(a.text.split("\n\n"))]


@pytest.fixture
def small_threshold(tmp_path, encoder):
    """An engine whose index turns approximate from 40 vectors, holding the 61 paragraphs."""
    engine = Engine(make_settings(tmp_path / "index", reader="rules", approximate_from=40), encoder=encoder)
    engine.ingest(paragraphs())
    yield engine
    engine.close()


def current_kind(engine: Engine) -> str:
    with engine.store.reading():
        return vector_index.kind(engine.store._current()[1])


def test_exact_below_the_threshold(tmp_path, encoder):
    engine = Engine(make_settings(tmp_path / "index", reader="rules", approximate_from=1000), encoder=encoder)
    engine.ingest(paragraphs())
    assert current_kind(engine) == "exact"
    engine.close()


def test_approximate_from_the_threshold_and_it_still_finds(small_threshold, reopen):
    engine = small_threshold
    assert current_kind(engine) == vector_index.APPROXIMATE
    best = engine.search("In what country is Normandy located?", k=3)
    assert any("France" in p.text for p in best)
    # A new process reads the same approximate generation from disk.
    again = reopen(engine)
    assert current_kind(again) == vector_index.APPROXIMATE
    assert [p.article_id for p in again.search("In what country is Normandy located?", k=3)] == [p.article_id for p in best]
    again.close()


def test_replace_and_delete_on_the_approximate_index(small_threshold, reopen):
    engine = small_threshold
    target = engine.search("Who was the duke in the battle of Hastings?", k=1)[0].article_id
    engine.ingest([Article(id=target, text="The Kyivstar outage began on 12 December after a cyber attack.", title="Replaced")])
    hit = engine.search("When did the Kyivstar outage begin?", k=1)[0]
    assert hit.article_id == target and "Kyivstar" in hit.text
    assert all("Hastings" not in p.text for p in engine.search("Who was the duke in the battle of Hastings?", k=5)
               if p.article_id == target)
    engine.delete(target)
    again = reopen(engine)
    assert all(p.article_id != target for p in again.search("When did the Kyivstar outage begin?", k=10))
    assert current_kind(again) == vector_index.APPROXIMATE
    again.close()


def test_back_to_exact_when_it_shrinks(small_threshold):
    engine = small_threshold
    for article in paragraphs()[:45]:  # 16 left: below half the threshold
        engine.delete(article.id)
    assert current_kind(engine) == "exact"
    assert engine.store.counts()[1] == len(engine.search("Sky", k=100))


def test_filters_on_the_approximate_index(small_threshold):
    from qa import Filters

    engine = small_threshold
    keep = paragraphs()[50].id
    found = engine.search("television", k=5, filters=Filters(article_ids=(keep,)))
    assert [p.article_id for p in found] == [keep]


def test_approximate_index_agrees_with_exact_on_real_vectors(encoder):
    texts = [a.text for a in paragraphs()]
    vectors = encoder.encode(texts)
    ids = np.arange(1, len(texts) + 1)
    config = vector_index.VectorConfig(approximate_from=40)
    approximate = vector_index.changed(vector_index.empty(384), None, vectors, ids, config)
    exact = vector_index.changed(vector_index.empty(384), None, vectors, ids, vector_index.VectorConfig())
    assert vector_index.kind(approximate) == vector_index.APPROXIMATE and vector_index.kind(exact) == "exact"
    queries = encoder.encode(["Who ruled Normandy?", "What does Sky sell?", "When was the duchy founded?"])
    approximate_scores, approximate_ids = vector_index.search(approximate, queries, 5, config=config)
    exact_scores, exact_ids = vector_index.search(exact, queries, 5)
    assert (approximate_ids[:, 0] == exact_ids[:, 0]).all()
    # float16 vectors: scores within about 1e-3 of exact cosines
    assert np.abs(approximate_scores[:, 0] - exact_scores[:, 0]).max() < 2e-3
    # The index given to `changed` is never altered (readers of the current generation keep it).
    smaller = vector_index.changed(approximate, ids[:5], None, None, config)
    assert approximate.ntotal == len(texts) and smaller.ntotal == len(texts) - 5


def test_removed_vectors_are_never_found_and_the_graph_is_rebuilt(encoder):
    texts = [a.text for a in paragraphs()]
    vectors = encoder.encode(texts)
    ids = np.arange(1, len(texts) + 1)
    config = vector_index.VectorConfig(approximate_from=40, rebuild_share=0.2)
    graph = vector_index.changed(vector_index.empty(384), None, vectors, ids, config)
    fewer = vector_index.changed(graph, ids[:5], None, None, config)
    assert fewer.ntotal == len(texts) - 5 and list(fewer.removed) == [1, 2, 3, 4, 5]
    _, found = vector_index.search(fewer, vectors[:5], 10, config=config)
    assert not set(found.ravel()) & {1, 2, 3, 4, 5}
    with pytest.raises(RuntimeError):
        fewer.reconstruct(3)
    # The removed ids survive a round trip through the vector file.
    again = vector_index.deserialize(vector_index.serialize(fewer))
    assert list(again.removed) == [1, 2, 3, 4, 5] and again.ntotal == fewer.ntotal
    # Past a fifth of the graph removed, it is rebuilt from the live vectors alone.
    rebuilt = vector_index.changed(again, ids[5:15], None, None, config)
    assert len(rebuilt.removed) == 0 and rebuilt.index.ntotal == rebuilt.ntotal == len(texts) - 15


def test_an_exact_vector_file_of_an_earlier_version_still_loads(encoder):
    import faiss

    vectors = encoder.encode(["Normandy is a region of France.", "Sky sells television."])
    old = faiss.IndexIDMap2(faiss.IndexFlatIP(384))
    old.add_with_ids(vectors, np.array([7, 9]))
    loaded = vector_index.deserialize(faiss.serialize_index(old))
    assert vector_index.kind(loaded) == "exact"
    assert list(vector_index.search(loaded, vectors[1:], 1)[1][0]) == [9]
