import json

import pytest

from qa.articles import kept_spans, make_article, read_paths
from qa.chunking import sentences
from qa.errors import BadInput

from .conftest import CORPUS


def by_id():
    return {a.id: a for a in read_paths([CORPUS])}


def test_seed_articles_are_stored_unchanged():
    for article in read_paths([CORPUS]):
        assert article.text == (CORPUS / f"{article.id}.txt").read_bytes().decode("utf-8")


def test_titles_dates_and_sources_come_from_the_text():
    articles = by_id()
    assert articles["004_4ca52c00881b59f2"].title == "Russia hits back at Ukraine with deadly air attacks after devastating drone blitz"
    assert articles["002_3806188b7ba67ac3"].title == "NATO and Ukraine to hold special meeting on air defence"
    assert articles["002_3806188b7ba67ac3"].source == "RTE.ie"
    assert articles["003_bd9df7c1096ea33d"].published == "2023-11-07"
    # No headline line: the first sentence stands in.
    assert articles["000_af743333a229a83a"].title.startswith("The governor of Kyiv, Oleksiy Kuleba")


@pytest.mark.parametrize("noise", ["Remind me later.", "(Image: Getty)", "Read the latest developments in Ukraine",
                                   "Dear readers,", "· RTE.ie", "date 2023-11-07"])
def test_text_not_the_articles_own_is_kept_out_of_sentences(noise):
    for article in read_paths([CORPUS]):
        for sentence in sentences(article):
            assert noise not in sentence.text
            assert article.text[sentence.start:sentence.end] == sentence.text


def test_a_glued_site_name_is_cut_from_its_sentence_only():
    article = by_id()["002_3806188b7ba67ac3"]
    first = [s.text for s in sentences(article)][1]
    assert first.startswith("Ambassadors from NATO and Ukraine will hold a special meeting")


def test_jsonl_fields(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": "x1", "text": "Body text here.", "title": "T", "published": "2024-01-02", "url": "http://e"}) + "\n")
    [article] = read_paths([path])
    assert (article.id, article.title, article.published, article.url) == ("x1", "T", "2024-01-02", "http://e")


@pytest.mark.parametrize("record, message", [
    ({"id": "a"}, "has no text"),
    ({"id": "a", "text": "   "}, "has no text"),
    ({"text": "x"}, "needs an 'id'"),
    ({"id": "a", "text": "x", "published": "Jan 5"}, "YYYY-MM-DD"),
    ({"id": "a", "text": "x", "published": "2024-13-01"}, "YYYY-MM-DD"),
    ({"id": "a", "text": "x", "published": "2023-02-29"}, "YYYY-MM-DD"),  # the pattern alone passes it
    ({"id": "a", "text": "x", "published": "2024-04-31"}, "YYYY-MM-DD"),
    ({"id": "", "text": "x"}, "needs an 'id'"),
    ({"id": "tab\there", "text": "x"}, "needs an 'id'"),
    ({"id": "line\n", "text": "x"}, "needs an 'id'"),
    ({"id": "c1\x85", "text": "x"}, "needs an 'id'"),
    ({"id": "x" * 513, "text": "x"}, "needs an 'id'"),
    ({"id": "a", "text": "lone \ud800 surrogate"}, "not valid Unicode"),
])
def test_bad_records_are_refused(record, message):
    with pytest.raises(BadInput, match=message):
        make_article(record)


@pytest.mark.parametrize("article_id", ["Victoria_(Australia)", "a b/c", "Köln?x=1#frag", "x" * 512, "..", "東京"])
def test_any_id_without_control_characters_is_taken(article_id):
    assert make_article({"id": article_id, "text": "Body."}).id == article_id


def test_an_articles_date_is_a_day_of_the_calendar_as_datetime_knows_it():
    import calendar

    from qa.records import is_date

    for year in (*range(1, 130), 1600, 1700, 1800, 1900, 2000, 2023, 2024, 2100, 2400, 9999):
        for month in range(1, 13):
            for day in range(1, 32):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                assert is_date(text) == (day <= calendar.monthrange(year, month)[1]), text
    assert not any(is_date(t) for t in ("2024-13-01", "2024-1-01", "24-01-01", "2024-01-01 ", None, 20240101))


def test_a_jsonl_line_ends_at_a_newline_only(tmp_path):
    # Another tool's JSON may keep U+2028, U+0085 or U+001C unescaped inside a string; str.splitlines
    # would cut the line there. A byte-order mark before the first line is no part of it.
    path = tmp_path / "others.jsonl"
    texts = ["First line.\u2028Second line.", "Next\x85line and \x1c a file separator."]
    records = [json.dumps({"id": f"u{i}", "text": t, "published": "2024-02-29"}, ensure_ascii=False) for i, t in enumerate(texts)]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(records).encode("utf-8") + b"\r\n")
    articles = read_paths([path])
    assert [a.text for a in articles] == texts and [a.id for a in articles] == ["u0", "u1"]


def test_a_byte_order_mark_is_not_part_of_a_text_file(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfBridge reopens\n\nThe bridge reopened on Monday.\n")
    [article] = read_paths([path])
    assert article.text.startswith("Bridge reopens") and article.title == "Bridge reopens"


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(BadInput, match="latin1.txt: not UTF-8"):
        read_paths([bad])
    with pytest.raises(BadInput, match="no such file"):
        read_paths([tmp_path / "missing.txt"])
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"id": "a", "text": "ok"}\n{not json\n')
    with pytest.raises(BadInput, match="b.jsonl:2"):
        read_paths([broken])


def test_kept_spans_cut_around_exclusions():
    article = make_article({"id": "a", "text": "Real text here.\nPhoto of it (Image: Getty)\nMore real text."})
    kept = kept_spans(article, [(0, len(article.text))])
    assert [article.text[s:e] for s, e in kept] == ["Real text here.", "More real text."]
