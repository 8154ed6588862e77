from qa.text import fold_typography, keyword_terms, split_sentences, term_stem


def test_sentences_keep_offsets_and_skip_abbreviations():
    text = 'Mr. Vitiuk said the U.S. Congress stalled. "It is a warning," he said.\nNext line here'
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "Mr. Vitiuk said the U.S. Congress stalled.",
        '"It is a warning," he said.',
        "Next line here",
    ]


def test_line_breaks_end_sentences():
    text = "Cyber attack was 'a big warning'\nRussian hackers were inside"
    assert len(split_sentences(text)) == 2


def test_fold_typography_keeps_length():
    text = "“Quote” — it’s"
    assert fold_typography(text) == "\"Quote\" - it's"
    assert len(fold_typography(text)) == len(text)


def test_keyword_terms_drop_stopwords_and_keep_codes():
    assert keyword_terms("Did Russia use an X-59 missile?") == ["russia", "use", "x-59", "missile"]


def test_keyword_terms_drop_the_possessive():
    # The keyword index reads "Emma's" as "emma" + "s"; the query term must be "emma".
    assert keyword_terms("Who was Emma’s brother?") == ["emma", "brother"]


def test_term_stem_joins_inflections():
    assert term_stem("normans") == term_stem("norman")
    assert term_stem("attacked") == term_stem("attacks")
    assert term_stem("defences") == term_stem("defense")
    assert term_stem("kyiv's") == "kyiv"
    assert term_stem("drones") != term_stem("drama")
