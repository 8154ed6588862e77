"""An extractive reader from rules: find the sentences that answer, then the span the question asks for.

Sentences are ranked by meaning (the embedding model) and by the question's words they share,
weighted by how rare each word is among the candidates. The question's form ("how many", "who",
"when", "which city") names the kind of span wanted; candidate spans of that kind are scored by
their sentence and by how close they stand to the question's words.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..records import Answer, Passage
from ..text import STOPWORDS, normalize_word, split_sentences, term_stem, words
from .base import answer_in_passage, best_distinct

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_WEEKDAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|hundreds|"
    "dozen|dozens|thousand|thousands|a dozen|a hundred|a thousand"
)
_MODIFIER = r"(?:(?:over|more than|less than|fewer than|about|around|almost|nearly|up to|at least|some|roughly|approximately)\s+)?"
_QUANTITY = re.compile(
    _MODIFIER
    + r"(?:[$€£]\s?\d[\d,.]*(?:[-\s](?:billion|million|thousand|bn|m|k)\b)?"
    + r"|\d[\d,.]*(?:[-\s]?(?:billion|million|thousand|percent|per cent|%|km|kilometers|kilometres|miles))?"
    + rf"|\b(?:{_NUMBER_WORDS})\b(?:[\s-](?:{_NUMBER_WORDS})\b)*)",
    re.IGNORECASE,
)
_DATE = re.compile(
    rf"\b(?:(?:early|mid|late)[-\s](?:{_MONTHS}|\d{{4}})"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})(?:\s+\d{{4}})?"
    rf"|(?:{_MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"
    rf"|(?:{_MONTHS})(?:\s+\d{{4}})?"
    rf"|(?:last|next|this)\s+(?:week|weekend|month|year|{_WEEKDAYS})"
    rf"|(?:{_WEEKDAYS})(?:\s+(?:morning|evening|night))?"
    rf"|yesterday|\d{{4}}-\d{{2}}-\d{{2}}|(?:in\s+)?\d{{4}}"
    rf"|\d{{1,2}}(?::\d{{2}})?\s*(?:a\.m\.|p\.m\.|am|pm))\b",
    re.IGNORECASE,
)
# A run of capitalised words (with inner "of", "de", hyphens, apostrophes): names of people,
# places and organisations.
_NAME = re.compile(
    r"(?:[A-Z](?:\.|[\w’'\-]*))(?:\s+(?:(?:of|de|la|von|van|al|bin)\s+)?[A-Z][\w’'\-]*)*"
)
_CALENDAR = re.compile(rf"^(?:{_MONTHS}|{_WEEKDAYS})$")
# Demonyms and other adjectives of origin name no person and no place on their own.
_DEMONYM = re.compile(r"^[A-Z]\w+(?:ian|ean|ese|ish)$")
# Titles and occupations that stand before a name and are not part of it.
_HONORIFICS = frozenset(
    """mr mrs ms dr prof sir dame lord lady president prime minister secretary general mayor governor
    spokesman spokesperson spokeswoman commander head chief chancellor senator congressman
    congresswoman ambassador judge justice officer engineer doctor professor captain colonel
    lieutenant sergeant major admiral marshal king queen prince princess pope bishop father
    sheikh emir director chairman chairwoman ceo founder reporter journalist analyst lawyer
    attorney deputy vice acting former late ex defence defense foreign interior""".split()
)

QUANTITY, DATE, PERSON, PLACE, ENTITY = "quantity", "date", "person", "place", "entity"
_PERSON_NOUNS = r"(?:person|man|woman|official|minister|president|spokesman|spokesperson|spokeswoman|commander|head|chief|leader|governor|mayor|secretary|general|ambassador|director|journalist|reporter|analyst)"
_PLACE_NOUNS = r"(?:city|town|village|country|region|regions|territory|province|state|capital|area|base|oblast|district|port|place|location|countries|cities)"


def question_type(question: str) -> str:
    q = question.lower()
    if re.search(r"\bhow (?:many|much|large|big|far|long|old|high|heavy)\b|\bwhat (?:number|percentage|amount|share)\b", q):
        return QUANTITY
    if re.search(r"\bwhen\b|\bwhat (?:date|day|year|month|time)\b|\bwhich (?:date|day|year|month)\b|\bon what\b", q):
        return DATE
    if re.search(rf"\bwho(?:m|se)?\b|\b(?:which|what) {_PERSON_NOUNS}\b", q):
        return PERSON
    if re.search(rf"\bwhere\b|\b(?:which|what)(?: \w+)? {_PLACE_NOUNS}\b", q):
        return PLACE
    return ENTITY


@dataclass(frozen=True)
class _Sentence:
    passage: Passage
    start: int  # in the passage's text
    end: int
    text: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.passage.article_id, self.passage.start + self.start)


def _previous_sentences(sentences: Sequence[_Sentence]) -> list[int | None]:
    """For each sentence, the index of the one just before it in its article, if among them.

    By article position, not list order: overlapping chunks list a sentence once, under the
    first passage that holds it, so its neighbour may have come from another passage.
    """
    ends = {}
    for index, s in enumerate(sentences):
        ends.setdefault((s.passage.article_id, s.passage.start + s.end), index)
    out: list[int | None] = []
    for s in sentences:
        start = s.passage.start + s.start
        # Only white space stands between two sentences of one text: the passage shows what of it
        # comes before this sentence; a passage that starts here may hide a line break or two.
        gap = len(s.passage.text[: s.start]) - len(s.passage.text[: s.start].rstrip())
        found = (ends.get((s.passage.article_id, start - back)) for back in range(gap + 4))
        out.append(next((i for i in found if i is not None), None))
    return out


def _terms(text: str) -> list[str]:
    return [term_stem(normalize_word(text[s:e])) for s, e in words(text) if normalize_word(text[s:e]) not in STOPWORDS]


def support(cosine: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """A sentence's support for an answer on 0..1: half its meaning (cosine with the question),
    half its shared rare words."""
    return 0.5 * np.clip(cosine, 0, 1) + 0.5 * overlap


class RuleReader:
    """Extractive reading by sentence ranking and answer-type rules. Needs the embedding encoder."""

    name = "rules"

    def __init__(self, encoder, min_support: float = 0.45):
        self.encoder = encoder
        # Below this blend of meaning and shared words, no sentence answers: return no answer.
        self.min_support = min_support

    def read(self, question: str, passages: Sequence[Passage], top_k: int) -> list[Answer]:
        sentences = self.sentences(passages)
        if not sentences:
            return []
        support = self.rank_sentences(question, sentences)
        kind = question_type(question)
        question_terms = set(_terms(question))
        question_words = {normalize_word(question[s:e]) for s, e in words(question)}
        answers = []
        order = np.argsort(-support)[:6]
        for index in order:
            sentence, score = sentences[index], float(support[index])
            if score < self.min_support:
                break
            for start, end, fit in self._spans(sentence.text, kind, question, question_terms, question_words):
                answer_score = score * 0.7 + fit * 0.3
                answers.append(answer_in_passage(sentence.passage, sentence.start + start, sentence.start + end, answer_score))
        return best_distinct(answers, top_k)

    def sentences(self, passages: Sequence[Passage]) -> list[_Sentence]:
        """The passages' sentences, each once: overlapping chunks share sentences."""
        seen, out = set(), []
        for passage in passages:
            for s, e in split_sentences(passage.text):
                sentence = _Sentence(passage, s, e, passage.text[s:e])
                if sentence.key not in seen:
                    seen.add(sentence.key)
                    out.append(sentence)
        return out

    def rank_sentences(self, question: str, sentences: Sequence[_Sentence], needed: Sequence[bool] | None = None) -> np.ndarray:
        """How well each sentence supports an answer: meaning and shared rare words, on 0..1.

        With `needed`, only those sentences are embedded (the rest score as if unrelated in
        meaning); word rarity still counts every sentence, so the needed ones score the same.
        """
        wanted = [i for i in range(len(sentences)) if needed is None or needed[i]]
        return support(self.sentence_cosines(question, sentences, wanted), self.sentence_overlaps(question, sentences))

    def sentence_cosines(self, question: str, sentences: Sequence[_Sentence], which: Sequence[int]) -> np.ndarray:
        """The cosine of the question with each sentence in `which` (the costly part: each is
        embedded); 0 for the others. A sentence's cosine is the same whichever others are asked
        for with it (each text is embedded alone, and each row's dot product is its own sum)."""
        cosine = np.zeros(len(sentences), dtype=np.float32)
        if len(which):
            question_vector = self.encoder.encode_query(question) if hasattr(self.encoder, "encode_query") else self.encoder.encode([question])[0]
            vectors = self.encoder.encode([sentences[i].text for i in which])
            cosine[list(which)] = (vectors * question_vector).sum(axis=1)
        return cosine

    def sentence_overlaps(self, question: str, sentences: Sequence[_Sentence]) -> np.ndarray:
        """The share of the question's words, weighted by their rarity among these sentences,
        that each sentence holds (0..1)."""
        question_terms = list(dict.fromkeys(_terms(question)))
        sentence_terms = [set(_terms(s.text)) for s in sentences]
        # Rarity among the candidates: a word in every sentence tells them apart no better than none.
        count = len(sentences)
        weight = {t: math.log(1 + count / (1 + sum(t in st for st in sentence_terms))) + 0.5 for t in question_terms}
        total = sum(weight.values()) or 1.0
        overlap = np.zeros(count)
        before = _previous_sentences(sentences)
        for index, terms in enumerate(sentence_terms):
            # A sentence often leaves its subject to the one before it in the article ("The hack
            # ... from 12 December" after "Kyivstar's system"): words there count for half.
            previous = sentence_terms[before[index]] if before[index] is not None else set()
            overlap[index] = sum(weight[t] * (1.0 if t in terms else 0.5 if t in previous else 0.0) for t in question_terms) / total
        return overlap

    def _spans(self, text: str, kind: str, question: str, question_terms: set[str], question_words: set[str]):
        """Candidate answer spans in one sentence: (start, end, fit 0..1)."""
        anchors = [(s, e) for s, e in words(text) if term_stem(normalize_word(text[s:e])) in question_terms]
        if kind == QUANTITY:
            found = [(m.start(), m.end()) for m in _QUANTITY.finditer(text)]
            found = [span for span in found if not _DATE.fullmatch(text[span[0]:span[1]]) or not re.fullmatch(r"\d{4}", text[span[0]:span[1]])]
        elif kind == DATE:
            found = [(m.start(), m.end()) for m in _DATE.finditer(text)]
            found = [(s + 3, e) if text[s:s + 3].lower() == "in " else (s, e) for s, e in found]
        else:
            found = list(self._names(text, kind, question_words))
        out = []
        # "Which regions ...?" asks for several names, so "Bryansk and Kursk" answers it whole.
        plural = bool(re.search(r"\b(?:which|what)(?: \w+)? \w+(?:ies|s)\b", question.lower()))
        for start, end in found:
            candidate = text[start:end]
            candidate_words = [normalize_word(candidate[s:e]) for s, e in words(candidate)]
            # The question's own words are not its answer, nor mostly made of them.
            if sum(w in question_words for w in candidate_words) * 2 >= len(candidate_words):
                continue
            # Characters between the candidate and the nearest of the question's words.
            distance = min((max(0, a - end, start - b) for a, b in anchors), default=len(text))
            fit = 1.0 / (1.0 + distance / 40.0)
            if kind == QUANTITY:
                fit = max(fit, self.counted_noun_fit(text, end, question))
            elif kind in (PERSON, PLACE, ENTITY):
                if len(candidate_words) == 1 and not text[:start].strip():
                    fit *= 0.3  # a capital at the start of a sentence marks no name
                if " and " in candidate:
                    fit = fit + 0.1 if plural else fit * 0.5
            if kind == PERSON and len(candidate_words) >= 2:
                fit = min(1.0, fit + 0.2)
            out.append((start, end, fit))
        return out

    @staticmethod
    def _names(text: str, kind: str, question_words: set[str]):
        for match in _NAME.finditer(text):
            start, end = match.span()
            tokens = text[start:end].split()
            # Drop leading titles and question words ("Mayor Vitali Klitschko" -> "Vitali Klitschko").
            while tokens and (normalize_word(tokens[0]).strip(".") in _HONORIFICS or normalize_word(tokens[0]) in question_words):
                start = text.index(tokens[0], start) + len(tokens[0])
                tokens = tokens[1:]
            while start < end and not text[start].isalnum():
                start += 1
            if not tokens or start >= end:
                continue
            name = text[start:end]
            if normalize_word(name) in STOPWORDS or _CALENDAR.match(name) or _DEMONYM.match(name):
                continue
            if kind == PERSON:
                # People's names carry no "of" and no possessive.
                if re.search(r"\s(?:of|de|la)\s", name):
                    continue
                if name.endswith(("'s", "’s")):
                    end -= 2
            # "Bryansk and Kursk": a pair of names joined by "and" answers a plural question.
            joined = re.match(r"\s+and\s+([A-Z][\w’'\-]+)", text[end:])
            if joined and kind == PLACE:
                yield start, end + joined.end()
            yield start, end

    @staticmethod
    def counted_noun_fit(text: str, end: int, question: str) -> float:
        """1 when the number counts what the question counts ("how many drones" / "7 drones")."""
        asked = re.search(r"\bhow (?:many|much)\s+((?:\w+\s+){0,3}?\w+)\b", question, re.IGNORECASE)
        if not asked:
            return 0.0
        nouns = {term_stem(normalize_word(w)) for w in asked.group(1).split()} - {term_stem(w) for w in STOPWORDS}
        after = text[end:end + 60]  # words() gives offsets within this slice
        following = [term_stem(normalize_word(after[s:e])) for s, e in words(after)][:4]
        return 1.0 if nouns & set(following) else 0.0
