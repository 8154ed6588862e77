"""Citation lookup: where do the articles state a given quote or claim?

Three strengths, tried over the articles that retrieval proposes (never the whole corpus):

- ``exact``: the same words, ignoring case, white space and the styles of quotes, apostrophes
  and dashes. Searched over each candidate article's whole text, so a quote may cross sentence
  and chunk boundaries.
- ``near``: nearly the same words (a word dropped, added, misspelt or changed), found by a
  word-level local alignment around seed hits, as BLAST finds near copies of a sequence.
- ``semantic``: the same statement in other words: the sentence (or two adjacent sentences) whose
  embedding is closest to the text's, with keyword overlap as a second opinion.

Every match is a span of the stored article text: ``article.text[start:end] == match.text``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from .errors import NotFound
from .records import Article, Filters, Match, Passage
from .text import STOPWORDS, fold_typography, keyword_terms, normalize_word, split_sentences, words

__all__ = ["CitationFinder", "Encoder"]

logger = logging.getLogger(__name__)

# Kinds best first; results are ordered by kind, then score.
KINDS = ("exact", "near", "semantic")

# Score bands keep the kinds' order visible in the score alone: exact in [0.95, 1],
# near in [0.70, 0.95), semantic in [0, 0.70).
_EXACT_SCORE = 1.0
_EXACT_PUNCTUATION_SCORE = 0.97  # same words, but punctuation between them differs
_NEAR_FLOOR, _NEAR_SPAN = 0.70, 0.24
# Regions of an article aligned per lookup: bounds the work of a quote made of common words.
_NEAR_REGIONS = 8
_SEMANTIC_CEILING = 0.69

# Semantic evidence: 0.8 x cosine + 0.2 x keyword overlap - 0.5 x share of the text's numbers the
# sentence lacks (a claim with another number is another claim). Fitted on 24 hand-written
# paraphrases and 20 unrelated-but-topical claims over the seed articles (not the dev set):
# lowest paraphrase 0.58, highest unrelated claim 0.51; the default threshold 0.54 sits between.
_COSINE_WEIGHT = 0.8
_MISSING_NUMBER_PENALTY = 0.5
_PAIR_COST = 0.03

_TOKEN = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 rows, one per text (cosine similarity = dot product)."""
        ...


@dataclass
class _Tokens:
    """The comparable words of a text, with where each sits in it.

    A token is a run of letters and digits inside a word of `text.words`: "bomb–defusing" and
    "bomb-defusing" and "bomb — defusing" all give the same two tokens, so dash and apostrophe
    styles cannot make two spellings of the same words differ.
    """

    norm: list[str]
    spans: list[tuple[int, int]]
    word_start: list[bool]  # the token begins a word
    word_end: list[bool]  # the token ends a word


def _tokens(text: str) -> _Tokens:
    norm, spans, starts, ends = [], [], [], []
    for ws, we in words(text):
        pieces = list(_TOKEN.finditer(text, ws, we))
        for index, piece in enumerate(pieces):
            norm.append(normalize_word(piece.group()))
            spans.append(piece.span())
            starts.append(index == 0)
            ends.append(index == len(pieces) - 1)
    return _Tokens(norm, spans, starts, ends)


@dataclass
class _Prepared:
    """What a lookup needs of one article, computed once per version of its text."""

    article: Article
    fingerprint: tuple
    tokens: _Tokens
    positions: dict[str, list[int]]  # token -> its indices, for seeding exact and near search
    # Sentences, then each two adjacent sentences: unit sentence_count + i spans sentences i, i+1.
    units: list[tuple[int, int]] = field(default_factory=list)
    sentence_count: int = 0
    unit_terms: list[frozenset[str]] = field(default_factory=list)
    unit_numbers: list[frozenset[str]] = field(default_factory=list)
    deletions: dict[str, set[str]] | None = None  # misspelling index, built on first need
    sentence_sizes: np.ndarray | None = None  # words per sentence; set last: units are ready
    # Sentence vectors are embedded on first need, a sentence at a time: a lookup embeds only
    # the sentences of its retrieved passages, not whole articles.
    vectors: np.ndarray | None = None
    embedded: np.ndarray | None = None  # bool per sentence: its row of `vectors` is filled


def _fingerprint(article: Article) -> tuple:
    # Articles can be replaced under the same id; a digest tells a new text from the cached one.
    # Exclusions decide which sentences are searched, so they belong to the version too.
    digest = hashlib.blake2b(article.text.encode("utf-8"), digest_size=16).hexdigest()
    return len(article.text), digest, article.excluded


def _prepare(article: Article) -> _Prepared:
    tokens = _tokens(article.text)
    positions: dict[str, list[int]] = {}
    for index, token in enumerate(tokens.norm):
        positions.setdefault(token, []).append(index)
    return _Prepared(article, _fingerprint(article), tokens, positions)


def _excluded(article: Article, start: int, end: int) -> bool:
    return any(s < end and start < e for s, e in article.excluded)


def _fold(text: str) -> str:
    return _SPACE.sub(" ", fold_typography(text).lower()).strip()


def _edit_distance_at_most(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of a and b, or limit + 1 once it is known to exceed limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _one_deletion(word: str) -> set[str]:
    """The word itself and every form of it with one letter deleted."""
    return {word} | {word[:i] + word[i + 1:] for i in range(len(word))}


def _misspelt(a: str, b: str) -> bool:
    """Whether two different words are one spelling of the same word (a typo apart).

    Short words and numbers never are: "war"/"was" or "25"/"26" are different words, not typos.
    """
    shortest = min(len(a), len(b))
    if shortest < 3 or a.isdigit() or b.isdigit():
        return False
    limit = 2 if shortest >= 8 else 1
    return _edit_distance_at_most(a, b, limit) <= limit


class CitationFinder:
    """Finds where the articles state a given text: exact, near, or semantic matches.

    `article(id)` returns the stored Article (raising `qa.errors.NotFound` if it is gone);
    `candidates(text, n)` returns up to n retrieved passages, best first (and
    `candidates(text, n, filters)` those of the articles the filters keep); `encoder.encode(texts)`
    returns L2-normalised float32 rows. Only the articles of the candidate passages are searched.
    """

    def __init__(
        self,
        article: Callable[[str], Article],
        candidates: Callable[[str, int], list[Passage]],
        encoder: Encoder,
        *,
        candidate_passages: int = 20,
        max_articles: int = 5,
        semantic_passages: int = 8,
        semantic_threshold: float = 0.54,
        semantic_min_cosine: float = 0.50,
        cache_size: int = 256,
    ):
        self.article = article
        self.candidates = candidates
        self.encoder = encoder
        self.candidate_passages = candidate_passages
        self.max_articles = max_articles
        self.semantic_passages = semantic_passages
        self.semantic_threshold = semantic_threshold
        self.semantic_min_cosine = semantic_min_cosine
        self.cache_size = cache_size
        self._cache: OrderedDict[str, _Prepared] = OrderedDict()
        self._lock = threading.Lock()

    # -- public surface ---------------------------------------------------------------------

    def find(self, text: str, k: int = 5, filters: Filters | None = None) -> list[Match]:
        """Up to k matches for `text`, best first: exact, then near, then semantic; only in the
        articles `filters` keep.

        An empty list means no candidate article supports the text. Input checks (empty or
        over-long text) are the engine's; a text without words simply finds nothing.
        """
        query = _tokens(text)
        if not query.norm or k <= 0:
            return []
        articles, spans = self._candidate_articles(text, filters)
        if not articles:
            return []

        started = time.perf_counter()
        matches: list[Match] = []
        for prepared in articles:
            matches.extend(self._exact(text, query, prepared))
        for prepared in articles:
            taken = [(m.start, m.end) for m in matches if m.article_id == prepared.article.id]
            matches.extend(self._near(query, prepared, taken))
        # A verbatim or nearly verbatim source answers the question; restatements elsewhere
        # would only bury it, and skipping them keeps quote lookups fast.
        if not matches:
            matches.extend(self._semantic(text, articles, k, spans))
        best = self._best(matches, k)
        logger.debug(
            "cite: %d words, %d articles, %d matches (%s) in %.1f ms",
            len(query.norm),
            len(articles),
            len(best),
            best[0].kind if best else "none",
            (time.perf_counter() - started) * 1000.0,
        )
        return best

    def warm(self, articles: Iterable[Article]) -> None:
        """Prepare articles ahead of lookups (words, sentences, sentence vectors), so that the
        first semantic lookup over them does not pay for encoding their sentences."""
        prepared = [self._prepared(article) for article in articles]
        for item in prepared:
            self._ensure_units(item)
        self._embed([(item, range(item.sentence_count)) for item in prepared])

    def forget(self, article_id: str) -> None:
        """Drop what is cached for an article (call when it is replaced or deleted)."""
        with self._lock:
            self._cache.pop(article_id, None)

    # -- candidates and the per-article cache -------------------------------------------------

    def _candidate_articles(self, text: str, filters: Filters | None = None) -> tuple[list[_Prepared], dict[str, list[tuple[int, int]]]]:
        """The articles of the best passages, and per article the spans of its best
        `semantic_passages` passages (where a semantic match is looked for)."""
        ids: list[str] = []
        spans: dict[str, list[tuple[int, int]]] = {}
        # Retrieval applies the filters, so every candidate article is one they keep. A plain
        # `candidates(text, n)` callable serves lookups without filters.
        if filters is not None and filters.active:
            passages = self.candidates(text, self.candidate_passages, filters)
        else:
            passages = self.candidates(text, self.candidate_passages)
        for rank, passage in enumerate(passages):
            if passage.article_id not in ids:
                if len(ids) >= self.max_articles:
                    continue
                ids.append(passage.article_id)
            if rank < self.semantic_passages:
                spans.setdefault(passage.article_id, []).append((passage.start, passage.end))
        prepared = []
        for article_id in ids:
            try:
                article = self.article(article_id)
            except NotFound:  # deleted between retrieval and lookup
                continue
            prepared.append(self._prepared(article))
        return prepared, spans

    def _prepared(self, article: Article) -> _Prepared:
        fingerprint = _fingerprint(article)
        with self._lock:
            cached = self._cache.get(article.id)
            if cached is not None and cached.fingerprint == fingerprint:
                self._cache.move_to_end(article.id)
                if cached.article != article:  # same text, a new title or source
                    cached.article = article
                return cached
        prepared = _prepare(article)
        with self._lock:
            self._cache[article.id] = prepared
            self._cache.move_to_end(article.id)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return prepared

    # -- exact --------------------------------------------------------------------------------

    def _exact(self, text: str, query: _Tokens, prepared: _Prepared) -> list[Match]:
        tokens, n = prepared.tokens, len(query.norm)
        # Scan from the query's rarest token in this article.
        anchor = min(range(n), key=lambda j: len(prepared.positions.get(query.norm[j], ())))
        found = []
        for position in prepared.positions.get(query.norm[anchor], ()):
            first = position - anchor
            last = first + n - 1
            if first < 0 or last >= len(tokens.norm):
                continue
            if tokens.norm[first:last + 1] != query.norm:
                continue
            # "Ukraine" is not the same word as the "Ukraine" of "Ukraine's".
            if not (tokens.word_start[first] and tokens.word_end[last]):
                continue
            start, end = self._with_edge_punctuation(
                text, query, prepared.article.text, tokens.spans[first][0], tokens.spans[last][1]
            )
            article_text = prepared.article.text
            score = _EXACT_SCORE if _fold(article_text[start:end]) == _fold(text) else _EXACT_PUNCTUATION_SCORE
            found.append(self._match(prepared, start, end, "exact", score))
        return found

    @staticmethod
    def _with_edge_punctuation(
        text: str, query: _Tokens, article_text: str, start: int, end: int
    ) -> tuple[int, int]:
        """Extend a span over the quotes and punctuation the given text has at its edges.

        A quote given as “One person ... result,” matches from the article's opening quote to
        its closing one; a text without them matches from its first word to its last.
        """
        leading = fold_typography(text[: query.spans[0][0]])
        trailing = fold_typography(text[query.spans[-1][1]:])
        # Walk outwards from the words, matching the given edge characters in order and
        # skipping white space on either side.
        wanted = [c for c in reversed(leading) if not c.isspace()]
        cursor = start
        for char in wanted:
            probe = cursor
            while probe > 0 and article_text[probe - 1].isspace():
                probe -= 1
            if probe > 0 and fold_typography(article_text[probe - 1]) == char:
                cursor = start = probe - 1
            else:
                break
        wanted = [c for c in trailing if not c.isspace()]
        cursor = end
        for char in wanted:
            probe = cursor
            while probe < len(article_text) and article_text[probe].isspace():
                probe += 1
            if probe < len(article_text) and fold_typography(article_text[probe]) == char:
                cursor = end = probe + 1
            else:
                break
        return start, end

    # -- near ---------------------------------------------------------------------------------

    def _near(self, query: _Tokens, prepared: _Prepared, taken: list[tuple[int, int]]) -> list[Match]:
        """Near copies of the query: a word-level local alignment around seed hits.

        Seeds are article positions of the query's words; a region where at least half the
        query's words fall on (nearly) one diagonal is aligned with Smith-Waterman, a misspelt
        word counting as half a match. The alignment must leave few errors: at most one, or one
        in ten words for long texts.
        """
        n = len(query.norm)
        if n < 4:  # in three words, one changed word leaves too little to call it a copy
            return []
        tokens = prepared.tokens
        # diagonal (article index - query index) -> query indices that hit it
        diagonals: dict[int, set[int]] = {}
        content: set[int] = set()  # query indices of words that are not stop words
        for j, token in enumerate(query.norm):
            if token not in STOPWORDS:
                content.add(j)
            hits = prepared.positions.get(token)
            if hits is None:
                # A misspelt word seeds where its right spelling stands, so that a short quote
                # whose only distinctive word is misspelt is still found.
                hits = [i for word in self._spellings(token, prepared) for i in prepared.positions[word]]
            for i in hits:
                diagonals.setdefault(i - j, set()).add(j)
        band = 3  # a dropped or added word shifts the diagonal; allow a few
        needed = max(2, math.ceil(n / 2))
        regions = []
        for diagonal in diagonals:
            hits = set()
            for d in range(diagonal - band, diagonal + band + 1):
                hits |= diagonals.get(d, set())
            if len(hits) >= needed:
                regions.append((len(hits), len(hits & content), diagonal))
        # Most query words first; between equals, most distinctive words.
        regions.sort(key=lambda r: (-r[0], -r[1], r[2]))

        found: list[Match] = []
        aligned: list[tuple[int, int]] = []  # token windows already aligned
        for _, _, diagonal in regions[:_NEAR_REGIONS]:
            lo = max(0, diagonal - band)
            hi = min(len(tokens.norm), diagonal + n + band)
            if any(lo < e and s < hi for s, e in aligned):
                continue
            # Where an exact match already stands, a near one would only repeat it.
            core_start = tokens.spans[max(lo, diagonal)][0]
            core_end = tokens.spans[min(hi, diagonal + n) - 1][1]
            if any(core_start < e and s < core_end for s, e in taken):
                continue
            aligned.append((lo, hi))
            result = _align(query.norm, tokens.norm[lo:hi])
            if result is None:
                continue
            first, last, exact, misspelt = result
            length = max(n, last - first + 1)
            errors = length - exact - 0.5 * misspelt
            if errors > max(1.0, 0.1 * n) or errors <= 0:
                continue  # too different, or an exact copy the exact search already judged
            start, end = tokens.spans[lo + first][0], tokens.spans[lo + last][1]
            if any(start < e and s < end for s, e in taken):
                continue
            similarity = 1.0 - errors / length
            score = _NEAR_FLOOR + _NEAR_SPAN * similarity
            found.append(self._match(prepared, start, end, "near", score))
            taken = taken + [(start, end)]
        return found

    @staticmethod
    def _spellings(token: str, prepared: _Prepared) -> list[str]:
        """The article's words that `token` could be a misspelling of."""
        if len(token) < 3 or token.isdigit():
            return []
        if prepared.deletions is None:
            # One-deletion variants of every word (as SymSpell indexes a dictionary): two words
            # one edit apart share a variant, so candidates come from a lookup, not a scan.
            deletions: dict[str, set[str]] = {}
            for word in prepared.positions:
                if len(word) >= 3 and not word.isdigit():
                    for variant in _one_deletion(word):
                        deletions.setdefault(variant, set()).add(word)
            prepared.deletions = deletions
        candidates: set[str] = set()
        for variant in _one_deletion(token):
            candidates |= prepared.deletions.get(variant, set())
        return sorted(word for word in candidates if _misspelt(token, word))

    # -- semantic -----------------------------------------------------------------------------

    def _semantic(self, text: str, articles: Sequence[_Prepared], k: int,
                  spans: dict[str, list[tuple[int, int]]]) -> list[Match]:
        """Sentences (or two adjacent ones) of the best passages that state the text in other words.

        The embedding's cosine decides; the share of the text's keywords the sentence holds is
        the second opinion, so that a sentence on the same topic but with other facts (other
        numbers, places, actors) does not pass.
        """
        query_terms = keyword_terms(text)
        if not query_terms:
            return []
        query_numbers = _numbers(text)
        chosen = []
        for prepared in articles:
            self._ensure_units(prepared)
            ranges = spans.get(prepared.article.id, [])
            sentences = [
                i for i, (s, e) in enumerate(prepared.units[: prepared.sentence_count])
                if any(s < pe and ps < e for ps, pe in ranges)
            ]
            if sentences:
                chosen.append((prepared, sentences))
        if not chosen:
            return []
        self._embed(chosen)
        query_vector = self.encoder.encode([text])[0]
        scored = []
        for prepared, sentences in chosen:
            count = prepared.sentence_count
            inside = set(sentences)
            # Units: the chosen sentences, and each two adjacent chosen sentences.
            units = sentences + [count + i for i in sentences if i + 1 in inside]
            vectors = np.vstack([self._unit_vector(prepared, u) for u in units])
            cosines = vectors @ query_vector
            for unit, cosine in zip(units, cosines):
                overlap = _term_overlap(query_terms, prepared.unit_terms[unit])
                numbers = prepared.unit_numbers[unit]
                missing = len(query_numbers - numbers) / len(query_numbers) if query_numbers else 0.0
                combined = (
                    _COSINE_WEIGHT * float(cosine)
                    + (1.0 - _COSINE_WEIGHT) * overlap
                    - _MISSING_NUMBER_PENALTY * missing
                )
                # A pair of sentences holds more keywords than either alone; it pays for its
                # length, so that it wins only when it states the text clearly better.
                if unit >= count:
                    combined -= _PAIR_COST
                if combined < self.semantic_threshold or cosine < self.semantic_min_cosine:
                    continue
                start, end = prepared.units[unit]
                scored.append((combined, end - start, prepared, start, end))
        # Best first; between equals, the shorter span says it more precisely.
        scored.sort(key=lambda s: (-s[0], s[1]))
        found: list[Match] = []
        for combined, _, prepared, start, end in scored:
            if any(m.article_id == prepared.article.id and m.start < end and start < m.end for m in found):
                continue
            score = _SEMANTIC_CEILING * min(1.0, max(0.0, combined))
            found.append(self._match(prepared, start, end, "semantic", score))
            if len(found) >= k:
                break
        return found

    def _ensure_units(self, prepared: _Prepared) -> None:
        """Sentences and sentence pairs of an article, with their keywords and numbers."""
        if prepared.sentence_sizes is not None:
            return
        article = prepared.article
        sentences = [
            (s, e) for s, e in split_sentences(article.text) if not _excluded(article, s, e)
        ]
        units = list(sentences)
        # Two adjacent sentences, for a claim that one sentence alone does not state.
        units += [(a[0], b[1]) for a, b in zip(sentences, sentences[1:])]
        texts = [article.text[s:e] for s, e in units]
        prepared.unit_terms = [frozenset(_stems(keyword_terms(t))) for t in texts]
        prepared.unit_numbers = [_numbers(t) for t in texts]
        prepared.units = units
        prepared.sentence_count = len(sentences)
        prepared.embedded = np.zeros(len(sentences), dtype=bool)
        prepared.sentence_sizes = np.array(  # set last: it marks the units as ready
            [max(1, len(words(t))) for t in texts[: len(sentences)]], dtype=np.float32
        )

    def _embed(self, wanted: Sequence[tuple[_Prepared, Sequence[int]]]) -> None:
        """Embed the wanted sentences that are not yet, in one call for all articles."""
        todo = [(prepared, i) for prepared, indices in wanted for i in indices if not prepared.embedded[i]]
        if not todo:
            return
        vectors = np.asarray(
            self.encoder.encode([p.article.text[slice(*p.units[i])] for p, i in todo]), dtype=np.float32
        )
        with self._lock:
            self._store_vectors(todo, vectors)

    @staticmethod
    def _store_vectors(todo, vectors: np.ndarray) -> None:
        for (prepared, i), vector in zip(todo, vectors):
            if prepared.vectors is None:
                prepared.vectors = np.zeros((prepared.sentence_count, vectors.shape[1]), dtype=np.float32)
            prepared.vectors[i] = vector
            prepared.embedded[i] = True  # after the row: a concurrent lookup reads it only then

    @staticmethod
    def _unit_vector(prepared: _Prepared, unit: int) -> np.ndarray:
        count = prepared.sentence_count
        if unit < count:
            return prepared.vectors[unit]
        # A pair's vector is its sentences' vectors averaged by length: the model pools the
        # mean of its word vectors, so this is close to encoding the pair, at no cost.
        i = unit - count
        sizes = prepared.sentence_sizes
        pair = prepared.vectors[i] * sizes[i] + prepared.vectors[i + 1] * sizes[i + 1]
        return pair / max(float(np.linalg.norm(pair)), 1e-12)

    # -- results ------------------------------------------------------------------------------

    @staticmethod
    def _match(prepared: _Prepared, start: int, end: int, kind: str, score: float) -> Match:
        article = prepared.article
        return Match(article.id, article.title, start, end, article.text[start:end], kind, round(float(score), 4),
                     article.published, article.source, article.url)

    @staticmethod
    def _best(matches: list[Match], k: int) -> list[Match]:
        ordered = sorted(matches, key=lambda m: (KINDS.index(m.kind), -m.score, m.article_id, m.start))
        kept: list[Match] = []
        for match in ordered:
            # The same place found twice (e.g. near inside exact) is given once, strongest kind.
            if any(m.article_id == match.article_id and m.start < match.end and match.start < m.end for m in kept):
                continue
            kept.append(match)
            if len(kept) >= k:
                break
        return kept


_PENALTY = -0.6


def _align(query: list[str], window: list[str]) -> tuple[int, int, int, int] | None:
    """Smith-Waterman of query words against window words.

    Returns (first, last) window indices of the best local alignment and its counts of exact and
    misspelt word matches, or None when nothing aligns. Scores: match +1, misspelt +0.5,
    changed, dropped or added word -0.6: less than a match gains, so that a matching edge word
    past one dropped word still joins the span ("morning [in] a strike"), and a changed word
    costs less than a drop and an add.
    """
    rows, cols = len(query) + 1, len(window) + 1
    score = [[0.0] * cols for _ in range(rows)]
    move = [[0] * cols for _ in range(rows)]  # 0 stop, 1 diagonal, 2 up (query gap), 3 left
    best, best_at = 0.0, (0, 0)
    pair_cache: dict[tuple[str, str], float] = {}
    for i in range(1, rows):
        q = query[i - 1]
        for j in range(1, cols):
            w = window[j - 1]
            if q == w:
                pair = 1.0
            else:
                key = (q, w)
                pair = pair_cache.get(key)
                if pair is None:
                    pair = 0.5 if _misspelt(q, w) else _PENALTY
                    pair_cache[key] = pair
            diagonal = score[i - 1][j - 1] + pair
            up = score[i - 1][j] + _PENALTY
            left = score[i][j - 1] + _PENALTY
            # Ties go to the diagonal: a changed word is aligned to its counterpart.
            value, direction = diagonal, 1
            if up > value:
                value, direction = up, 2
            if left > value:
                value, direction = left, 3
            if value <= 0.0:
                value, direction = 0.0, 0
            score[i][j], move[i][j] = value, direction
            if value > best:
                best, best_at = value, (i, j)
    if best <= 0:
        return None
    i, j = best_at
    last = j - 1
    exact = misspelt = 0
    first = last
    while i > 0 and j > 0 and move[i][j] != 0:
        direction = move[i][j]
        if direction == 1:
            if query[i - 1] == window[j - 1]:
                exact += 1
            elif pair_cache.get((query[i - 1], window[j - 1]), _PENALTY) > 0:
                misspelt += 1
            first = j - 1
            i, j = i - 1, j - 1
        elif direction == 2:
            i -= 1
        else:
            first = j - 1
            j -= 1
    return first, last, exact, misspelt


# Numbers are the facts a restatement must keep; spelled-out small numbers count as digits.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}


def _numbers(text: str) -> frozenset[str]:
    """The numbers a text states: "1,000" and "1000" alike, "seven" as "7"."""
    found = {m.group().replace(",", "") for m in _NUMBER.finditer(text)}
    for start, end in words(text):
        value = _NUMBER_WORDS.get(normalize_word(text[start:end]))
        if value is not None:
            found.add(value)
    return frozenset(found)


def _stems(terms: list[str]) -> list[str]:
    # A crude stem (the first five letters) lets "attack"/"attacks" and "supplied"/"supply"
    # count as the same keyword; numbers are kept whole, since 25 and 250 are different facts.
    return [t if t.isdigit() else t[:5] for t in terms]


def _term_overlap(query_terms: list[str], unit_terms: frozenset[str]) -> float:
    stems = set(_stems(query_terms))
    return len(stems & unit_terms) / len(stems) if stems else 0.0
