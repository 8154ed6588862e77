"""Filters applied inside retrieval, over the seed articles and 100 small generated ones (real model,
FAISS and SQLite): a filter that keeps few articles still gets k results, not what is left of the
k best overall."""

import datetime
import shutil

import pytest

from qa import BadInput, Engine, Filters

from .conftest import make_settings

# 95 articles about ferries from "Wire"; 5 about a chess club from "Rare Gazette", which a question
# about ferries ranks below all 95 (so dropping hits after retrieval would leave none of them).
GAZETTE = (7, 23, 41, 68, 90)
UNDATED = (3, 50)
TOWNS = ["Arden", "Brisk", "Calder", "Dunmore", "Elstow", "Fenwick", "Garth", "Hollin", "Ickle", "Jarrow"]


def town(i: int) -> str:
    return f"{TOWNS[i % 10]} {TOWNS[i // 10]}ton"


def published(i: int) -> str | None:
    return None if i in UNDATED else (datetime.date(2024, 1, 1) + datetime.timedelta(days=i)).isoformat()


def record(i: int) -> dict:
    if i in GAZETTE:
        text = (f"Chess club news from {town(i)}\n\nThe chess club of {town(i)} met on Tuesday evening. "
                f"Club member Nadia Orlov{i} won the spring tournament.")
        extra = {"source": "Rare Gazette", "url": f"https://gazette.example/{i}"}
    else:
        text = (f"Ferry timetable for {town(i)}\n\nThe harbour council of {town(i)} approved a new ferry "
                f"timetable on day {i}. Boats will leave every {i + 10} minutes.")
        extra = {"source": "Wire"}
    date = published(i)
    return {"id": f"gen-{i:03d}", "text": text, **extra, **({"published": date} if date else {})}


@pytest.fixture(scope="module")
def engine(tmp_path_factory, seed_index, encoder):
    directory = tmp_path_factory.mktemp("filters") / "index"
    shutil.copytree(seed_index, directory)
    engine = Engine(make_settings(directory), encoder=encoder)
    engine.ingest_records([record(i) for i in range(100)])
    yield engine
    engine.close()


QUERY = "harbour council ferry timetable"


def test_a_filter_keeping_5_percent_of_the_articles_still_gets_k_results(engine):
    # Unfiltered, the 50 best passages hold none of the Gazette's articles.
    assert not any(p.article_id in {f"gen-{i:03d}" for i in GAZETTE} for p in engine.search(QUERY, 50))
    results = engine.search(QUERY, 5, Filters(source="Rare Gazette"))
    assert sorted(p.article_id for p in results) == [f"gen-{i:03d}" for i in GAZETTE]
    assert all(p.source == "Rare Gazette" and p.url.startswith("https://gazette.example/") for p in results)
    assert len(engine.search(QUERY, 3, Filters(source="Rare Gazette"))) == 3


def test_date_bounds_are_inclusive_and_leave_out_undated_articles(engine):
    results = engine.search(QUERY, 20, Filters(published_from="2024-02-01", published_to="2024-02-05"))
    assert sorted(p.published for p in results) == ["2024-02-01", "2024-02-02", "2024-02-03", "2024-02-04", "2024-02-05"]
    # Article 50 is undated: a bound that would hold its neighbours leaves it out.
    around = engine.search(QUERY, 20, Filters(published_from="2024-02-19", published_to="2024-02-21"))
    assert sorted(p.article_id for p in around) == ["gen-049", "gen-051"]
    only_from = engine.search(QUERY, 100, Filters(published_from="2024-04-08"))
    assert sorted(p.article_id for p in only_from) == ["gen-098", "gen-099"]
    assert engine.search(QUERY, 5, Filters(published_from="2024-03-01", published_to="2024-02-01")) == []


def test_article_ids_and_combined_filters(engine):
    chosen = Filters(article_ids=("gen-010", "gen-041", "001_9bf8dedd913fbc69"))
    assert {p.article_id for p in engine.search(QUERY, 10, chosen)} == {"gen-010", "gen-041", "001_9bf8dedd913fbc69"}
    both = Filters(source="Rare Gazette", article_ids=("gen-010", "gen-041"), published_to="2024-02-11")
    assert [p.article_id for p in engine.search(QUERY, 10, both)] == ["gen-041"]  # published 2024-02-11
    assert engine.search(QUERY, 10, Filters(article_ids=("gen-041",), published_to="2024-02-10")) == []
    assert engine.search(QUERY, 10, Filters(source="Nobody")) == []
    assert engine.search(QUERY, 10, Filters(article_ids=("no-such-article",))) == []


def test_ask_reads_only_the_filtered_articles_and_cites_their_fields(engine):
    answers = engine.ask("Who won the spring tournament?", 5, Filters(source="Rare Gazette", published_from="2024-02-01"))
    assert answers, "a Gazette article after February 1 answers it"
    for answer in answers:
        c = answer.citation
        assert c.article_id in {"gen-041", "gen-068", "gen-090"}
        assert c.source == "Rare Gazette" and c.url == f"https://gazette.example/{int(c.article_id[4:])}"
        assert c.published == published(int(c.article_id[4:]))
        assert engine.article(c.article_id).text[c.start:c.end] == answer.text
    wire = engine.ask("Who won the spring tournament?", 3, Filters(source="Wire"))
    assert all(a.citation.source == "Wire" for a in wire) and "Orlov" not in " ".join(a.text for a in wire)


def test_citation_lookup_honours_the_filters(engine):
    quote = f"The harbour council of {town(40)} approved a new ferry timetable on day 40."
    [best, *_] = engine.cite(quote, 3, Filters(published_from="2024-02-01"))
    assert (best.kind, best.article_id, best.source, best.published) == ("exact", "gen-040", "Wire", "2024-02-10")
    elsewhere = engine.cite(quote, 3, Filters(article_ids=("gen-039", "gen-041")))
    assert all(m.article_id in {"gen-039", "gen-041"} for m in elsewhere)
    assert not any(m.kind == "exact" for m in elsewhere)
    assert engine.cite(quote, 3, Filters(source="Nobody")) == []


def test_listing_is_paged_newest_first_and_filtered(engine):
    everything = engine.list_articles(limit=100)
    assert everything.total == 105 and len(everything.articles) == 100
    dates = [a.published for a in everything.articles if a.published]
    assert dates == sorted(dates, reverse=True) and dates[0] == "2024-04-09"
    rest = engine.list_articles(limit=100, offset=100).articles
    assert all(a.published is None for a in rest[-5:]), "undated articles come last"
    undated = [a.id for a in everything.articles + rest if a.published is None]
    assert undated == sorted(undated), "then by id"
    assert "gen-003" in undated and "gen-050" in undated

    gazette = [engine.list_articles(Filters(source="Rare Gazette"), limit=2, offset=o) for o in (0, 2, 4)]
    assert [page.total for page in gazette] == [5, 5, 5]
    assert [a.id for page in gazette for a in page.articles] == ["gen-090", "gen-068", "gen-041", "gen-023", "gen-007"]
    first = gazette[0].articles[0]
    assert (first.title, first.source, first.url, first.chunks) == (
        f"Chess club news from {town(90)}", "Rare Gazette", "https://gazette.example/90", 1)
    week = engine.list_articles(Filters(published_from="2024-01-01", published_to="2024-01-07"))
    assert [a.id for a in week.articles] == ["gen-006", "gen-005", "gen-004", "gen-002", "gen-001", "gen-000"]


def test_sources_count_articles(engine):
    counts = {s.source: s.articles for s in engine.sources()}
    assert counts["Rare Gazette"] == 5 and counts["Wire"] == 95 and counts["RTE.ie"] == 1


@pytest.mark.parametrize("filters", [
    {"published_from": "2024-1-1"}, {"published_to": "2024-13-01"}, {"published_from": "2024-01-01\n"},
    {"source": ""}, {"article_ids": ("ok", "bad\x00id")}, {"article_ids": ("x" * 513,)}, {"article_ids": "gen-001"},
])
def test_bad_filters_are_bad_input(filters):
    with pytest.raises(BadInput):
        Filters(**filters)


def test_bad_listing_pages_are_bad_input(engine):
    for limit, offset in ((0, 0), (101, 0), (10, -1), (True, 0)):
        with pytest.raises(BadInput):
            engine.list_articles(limit=limit, offset=offset)
