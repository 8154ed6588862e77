"""Reader pieces that need no model: question forms, span shaping, deduplication."""

import pytest

from qa.readers.base import answer_in_passage, best_distinct
from qa.readers.hybrid import _reshape, has_form
from qa.readers.rules import DATE, ENTITY, PERSON, PLACE, QUANTITY, RuleReader, question_type
from qa.records import Passage
from qa.text import normalize_word, words


@pytest.mark.parametrize("question, kind", [
    ("How many drones did Kyiv's defences shoot down?", QUANTITY),
    ("How large is the aid package?", QUANTITY),
    ("When did the outage begin?", DATE),
    ("On what date did the outage begin?", DATE),
    ("Who is the head of the SBU?", PERSON),
    ("Which spokesman spoke for NATO?", PERSON),
    ("Near which city is the base located?", PLACE),
    ("In which Russian regions were drones shot down?", PLACE),
    ("What did the ministry publish?", ENTITY),
])
def test_question_types(question, kind):
    assert question_type(question) == kind


@pytest.mark.parametrize("text, number, question, fits", [
    # The words right after the number are read, not the sentence's first words.
    ("Drones hit the city as 7 missiles, 2 planes and 40 drones flew in.", "7", "How many drones flew in?", 0.0),
    ("Drones hit the city as 7 missiles, 2 planes and 40 drones flew in.", "40", "How many drones flew in?", 1.0),
    ("As a result, two people were injured.", "two", "How many people were injured?", 1.0),
    ("As a result, two people were injured.", "two", "When were they injured?", 0.0),
])
def test_a_number_fits_what_how_many_counts(text, number, question, fits):
    end = text.index(number) + len(number)
    assert RuleReader.counted_noun_fit(text, end, question) == fits


def question_words(question):
    return {normalize_word(question[s:e]) for s, e in words(question)}


@pytest.mark.parametrize("text, span, kind, question, expected", [
    ("a strike on Kropynmytskyi in central Ukraine, damaging", "Kropynmytskyi in central Ukraine", PLACE,
     "In which city in central Ukraine was one civilian killed?", "Kropynmytskyi"),
    ("attempted in early February this year", "February", DATE, "When was it?", "early February"),
    ("struck with over 400 drones", "400", QUANTITY, "How many drones?", "over 400"),
    ("Mayor Vitali Klitschko said", "Vitali Klitschko", PERSON, "Who is the mayor?", "Vitali Klitschko"),
])
def test_spans_take_the_form_asked_for(text, span, kind, question, expected):
    start = text.index(span)
    s, e = _reshape(text, start, start + len(span), kind, question_words(question))
    assert text[s:e] == expected


def test_forms():
    assert has_form("over 400", QUANTITY) and has_form("two", QUANTITY) and not has_form("Kyiv", QUANTITY)
    assert has_form("12 December", DATE) and not has_form("the ministry", DATE)
    assert has_form("Illia Vitiuk", PERSON) and not has_form("the head of", PERSON)


def test_the_same_answer_from_overlapping_chunks_is_given_once():
    text = "Officials said 7 drones were shot down over the city."
    first = Passage("a", "T", 100, 100 + len(text), text, 1.0)
    second = Passage("a", "T", 100, 100 + len(text), text, 0.9)
    start = text.index("7")
    answers = [answer_in_passage(p, start, start + 1, score) for p, score in ((first, 0.9), (second, 0.8))]
    kept = best_distinct(answers, 5)
    assert len(kept) == 1 and kept[0].score == 0.9
    assert (kept[0].citation.start, kept[0].context.start, kept[0].context.text) == (100 + start, 100, text)


def test_a_sentence_finds_the_one_before_it_in_another_passage():
    from qa.readers.rules import RuleReader, _previous_sentences

    text = "Hackers were inside Kyivstar's system.\nThe hack knocked out services from 12 December. It ended."
    first = Passage("a", "A", 0, 38, text[:38], 1.0)
    second = Passage("a", "A", 0, len(text), text, 0.5)  # overlaps the first
    other = Passage("b", "B", 39, len(text), text[39:], 0.4)  # same offsets, another article
    sentences = RuleReader(encoder=None).sentences([first, second, other])
    texts = [s.text for s in sentences]
    before = _previous_sentences(sentences)
    hack = texts.index("The hack knocked out services from 12 December.")
    assert texts[before[hack]] == "Hackers were inside Kyivstar's system."
    assert sentences[before[hack]].passage is first
    assert texts[before[texts.index("It ended.")]] == texts[hack]
    assert before[0] is None
    assert all(before[i] is None for i, s in enumerate(sentences) if s.passage is other and s.start == 0)


def test_the_hybrid_reading_breaks_ties_of_clipped_scores_as_the_full_reading_does():
    # Answers are ranked by unit score, which clips scores below 0 to 0: ties that the candidates'
    # order breaks. Reading lazily must not stop at an answer that ties with one it has not read.
    import math

    import numpy as np

    from qa.readers.hybrid import Candidate, HybridReader, HybridWeights

    text = "Alpha came. Bravo came. Charlie came. Delta came. Echo came. Foxtrot came."
    passage = Passage("a", "Six", 0, len(text), text, 1.0)
    names = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"]
    margin = 4 * math.log(0.4 / 0.6)  # span term 0.4, echo 1: a score of -0.6 before support

    def candidate(name):
        start = text.index(name)
        return Candidate(0, start, start + len(name), margin, 0.0, 1.0, 0.0, 1.0)
    candidates = [candidate(name) for name in names]
    homes = [None, 0, 1, 2, 3, 4]  # the first candidate has no sentence: its score is known
    overlaps = np.array([1.0, 0.0, 0.0, 0.0, 0.0])  # Bravo's sentence shares every word

    class Rules:
        def sentence_cosines(self, question, sentences, which):
            cosine = np.zeros(len(sentences), dtype=np.float32)
            cosine[[i for i in which if i == 0]] = 0.1
            return cosine

    reader = HybridReader(None, Rules(), HybridWeights(span=1.0, sentence=1.0, form=0.0, counted=0.0, echo=1.0,
                                                        min_support=0.0, threshold=-1e9))
    reader._unscored = lambda question, passages, spans=None: (candidates, homes, [None] * 5, overlaps)
    scores = [reader.score(c) for c in candidates]
    assert all(score < 0 for score in scores) and reader.unit_score(max(scores)) == 0.0
    # Every unit score is 0, so the full reading keeps the candidates' order: Alpha first, even
    # though Bravo scores higher (-0.05 against -0.6) once its sentence is read.
    assert [a.text for a in reader.read("Who came?", [passage], 1)] == ["Alpha"]
    assert [a.text for a in reader.read("Who came?", [passage], 3)] == ["Alpha", "Bravo", "Charlie"]
    # With no threshold at all the reading still ends, when nothing is left to read.
    import dataclasses
    reader.weights = dataclasses.replace(reader.weights, threshold=-math.inf)
    assert [a.text for a in reader.read("Who came?", [passage], 10)] == names
