"""Integration: the seed articles through the real model, FAISS and SQLite."""

import pytest

from qa.errors import BadInput, NotFound
from qa.retrieval import Retriever


def check_offsets(engine, answer):
    article = engine.article(answer.citation.article_id)
    assert article.text[answer.citation.start:answer.citation.end] == answer.text
    assert article.text[answer.context.start:answer.context.end] == answer.context.text
    assert answer.context.start <= answer.citation.start < answer.citation.end <= answer.context.end


@pytest.mark.parametrize("question, expected, article", [
    ("How many drones did Kyiv's defences shoot down?", "7", "000_af743333a229a83a"),
    ("Which telecoms operator did Russian hackers break into?", "Kyivstar", "002_3806188b7ba67ac3"),
    ("Who is the Kyiv mayor?", "Vitali Klitschko", None),
])
def test_ask_gives_real_answers_with_exact_citations(seed_engine, question, expected, article):
    answers = seed_engine.ask(question, 3)
    assert answers, question
    assert expected in answers[0].text
    if article:
        assert answers[0].citation.article_id == article
    for answer in answers:
        check_offsets(seed_engine, answer)


def test_no_answer_is_an_empty_list(seed_engine):
    assert seed_engine.ask("Who won the 2022 FIFA World Cup?") == []


def test_answers_from_overlapping_chunks_are_given_once(seed_engine):
    answers = seed_engine.ask("How many drones did Kyiv's defences shoot down?", 10)
    spans = [(a.citation.article_id, a.citation.start) for a in answers]
    assert len(spans) == len(set(spans))


def test_search_finds_rare_names_and_codes(seed_engine):
    for query, needle in [("X-59", "X-59"), ("Kyivstar", "Kyivstar"), ("Sandworm", "Sandworm")]:
        results = seed_engine.search(query, 3)
        assert needle in results[0].text
        article = seed_engine.article(results[0].article_id)
        assert article.text[results[0].start:results[0].end] == results[0].text


def test_search_finds_paraphrases(seed_engine):
    results = seed_engine.search("mobile phone network knocked offline by hackers", 3)
    assert any("Kyivstar" in r.text for r in results)


def test_excluded_text_is_never_searched_or_answered(seed_engine):
    for result in seed_engine.search("Remind me later support The Moscow Times donation", 20):
        assert "Remind me later" not in result.text and "Dear readers" not in result.text


@pytest.mark.parametrize("bad", ["", "   ", None, 5, "x" * 2001])
def test_bad_questions_are_refused(seed_engine, bad):
    with pytest.raises(BadInput):
        seed_engine.ask(bad)


@pytest.mark.parametrize("k", [0, 101, -1, True])
def test_k_out_of_range_is_refused(seed_engine, k):
    with pytest.raises(BadInput):
        seed_engine.search("drones", k)


def test_unknown_article(seed_engine):
    with pytest.raises(NotFound):
        seed_engine.article("nope")


def test_sentence_support_prefers_one_sentence_that_says_it_all(seed_engine):
    # Same words, once in one sentence and once spread over two: the first is where an answer sits.
    question = "Which telecoms operator did Russian hackers break into?"
    together = "Russian hackers broke into Kyivstar, a telecoms operator. It was a cold day."
    spread = "Russian hackers were busy. Kyivstar, a telecoms operator, broke records."
    unrelated = "The weather in Kyiv was cold and grey all week."
    with seed_engine.store.reading():
        support = seed_engine.retriever.sentence_support(question, {1: together, 2: spread, 3: unrelated})
    assert support[1] > support[2] > support[3] == 0.0
    assert 0.0 < support[1] <= 1.0


def test_search_ranks_the_passage_whose_sentence_answers_first(seed_engine):
    passages = seed_engine.search("Which telecoms operator did Russian hackers break into?", 3)
    assert "Kyivstar" in passages[0].text


def test_coverage_says_how_much_of_a_questions_rare_words_the_passages_hold(seed_engine):
    def coverage(question):
        return seed_engine.retriever.coverage(question, seed_engine.search(question, 8))

    assert coverage("Which telecoms operator did Russian hackers break into?") > 0.5
    assert coverage("Who painted the Mona Lisa?") == 0.0  # no article holds any of its words
    # Half-related: "capital" is in the articles, "France" is not and weighs more.
    assert 0.0 < coverage("What is the capital of France?") < 0.5
    assert coverage("?!") == 1.0  # nothing to judge by


def test_unmatched_names_counts_the_questions_names_no_passage_holds(seed_engine):
    def unmatched(question):
        return seed_engine.retriever.unmatched_names(question, seed_engine.search(question, 8))

    assert unmatched("Which telecoms operator did Russian hackers break into?") == 0
    assert unmatched("How many drones did Kyiv's defences shoot down?") == 0  # "Kyiv's" is Kyiv
    assert unmatched("How many drones did Kyiv's defences shoot down over Lisbon and Porto?") == 2
    # The first word is capitalised whatever it is: it names nothing.
    assert unmatched("Lisbon: how many drones did Kyiv's defences shoot down?") == 0


def test_unmatched_names_reads_the_articles_titles_too():
    from qa.records import Passage

    passage = Passage("a", "Kyivstar hit by cyberattack", 0, 30, "The operator said service is back.", 1.0)
    assert Retriever.unmatched_names("When did Kyivstar say its service was back?", [passage]) == 0
    assert Retriever.unmatched_names("When did Vodafone say its service was back?", [passage]) == 1


def test_the_names_gate_refuses_a_question_about_a_name_the_passages_lack(fresh_engine):
    import dataclasses

    related = "How many drones did Kyiv's defences shoot down?"
    elsewhere = "How many drones did Kyiv's defences shoot down over Lisbon?"
    reader = fresh_engine.reader

    def set_gate(value):
        if hasattr(reader, "weights"):
            reader.weights = dataclasses.replace(reader.weights, max_unmatched_names=value, min_coverage=0.0)
        else:
            reader.max_unmatched_names, reader.min_coverage = value, 0.0

    set_gate(None)
    assert fresh_engine.ask(elsewhere)  # its other words match a sentence that counts drones
    set_gate(0)
    assert fresh_engine.ask(elsewhere) == []
    assert fresh_engine.ask(related)[0].text == "7"


def test_the_coverage_gate_refuses_what_the_passages_do_not_touch(fresh_engine):
    import dataclasses

    related = "How many drones did Kyiv's defences shoot down?"
    off_topic = "How many drones did Kyiv's defences shoot down over Lisbon and Porto?"
    held = {q: fresh_engine.retriever.coverage(q, fresh_engine.search(q, 8)) for q in (related, off_topic)}
    assert held[off_topic] < held[related]
    reader = fresh_engine.reader

    def set_gate(value):  # the names gate off: this test is about coverage alone
        if hasattr(reader, "weights"):
            reader.weights = dataclasses.replace(reader.weights, min_coverage=value, max_unmatched_names=None)
        else:
            reader.min_coverage, reader.max_unmatched_names = value, None

    set_gate(0.0)
    assert fresh_engine.ask(off_topic)  # the span model alone finds a count of drones
    set_gate((held[off_topic] + held[related]) / 2)
    assert fresh_engine.ask(off_topic) == []
    assert fresh_engine.ask(related)[0].text == "7"
