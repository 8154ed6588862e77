"""Text primitives shared by every stage: sentences and words, each with its offsets.

Nothing here changes a string that is kept; functions return spans into the text they are given,
so that callers can carry offsets from the article to the answer unchanged.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Abbreviations after which a full stop does not end a sentence (lower-cased, without the dot).
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof st sr jr gen col lt sgt capt cmdr gov sen rep rev hon pres vs etc approx
    inc ltd co corp dept est fig no nos vol jan feb mar apr jun jul aug sep sept oct nov dec
    u.s u.k u.n e.u a.m p.m i.e e.g""".split()
)

# A sentence may end at ., ! or ? (with closing quotes or brackets after it), before white space.
_END = re.compile(r"""[.!?]+['"’”)\]]*(?=\s)""")
_PARAGRAPH = re.compile(r"\n\s*")
_WORD = re.compile(r"\w+(?:[’'.\-–]\w+)*", re.UNICODE)

# Typographic variants that a reader does not distinguish: quotes, apostrophes, dashes.
_FOLD = str.maketrans(
    {
        "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'", "´": "'",
        "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
        "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    }
)


def fold_typography(text: str) -> str:
    """Map quote, apostrophe and dash styles to ASCII; keeps the length unchanged."""
    return text.translate(_FOLD)


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _ends_sentence(text: str, dot_end: int, match_start: int) -> bool:
    """Whether the punctuation ending at `dot_end` closes a sentence."""
    following = text[dot_end:dot_end + 40].lstrip()
    if not following:
        return True
    first = following[0]
    # The next sentence starts with a capital, a digit or an opening quote or bracket.
    if not (first.isupper() or first.isdigit() or first in "\"'“‘(["):
        return False
    if text[match_start] == ".":
        word = re.search(r"([\w.]+)$", text[max(0, match_start - 12):match_start])
        if word:
            token = word.group(1).lower().rstrip(".")
            if token in _ABBREVIATIONS:
                return False
            # Initials such as "J. K." or "U.S." end no sentence.
            if len(token) == 1 and token.isalpha():
                return False
    return True


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans `(start, end)` within `text[start:end]`, trimmed of white space.

    Line breaks always end a sentence: in news text they separate paragraphs, headlines and
    captions, which never continue across them.
    """
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for block_start, block_end in _blocks(text, start, end):
        cursor = block_start
        for match in _END.finditer(text, block_start, block_end):
            if _ends_sentence(text, match.end(), match.start()):
                span = _trim(text, cursor, match.end())
                if span[1] > span[0]:
                    spans.append(span)
                cursor = match.end()
        span = _trim(text, cursor, block_end)
        if span[1] > span[0]:
            spans.append(span)
    return spans


def _blocks(text: str, start: int, end: int) -> list[tuple[int, int]]:
    blocks = []
    cursor = start
    for match in _PARAGRAPH.finditer(text, start, end):
        blocks.append((cursor, match.start()))
        cursor = match.end()
    blocks.append((cursor, end))
    return [b for b in blocks if b[1] > b[0]]


def words(text: str) -> list[tuple[int, int]]:
    """Word spans in `text`: letters and digits, with inner apostrophes, dots and dashes."""
    return [m.span() for m in _WORD.finditer(text)]


def count_words(text: str) -> int:
    """How many words `text` has, stop words included (a chunk's length for BM25)."""
    return sum(1 for _ in _WORD.finditer(text))


def normalize_word(word: str) -> str:
    """The form in which two words compare equal: case, accents and typography folded."""
    word = fold_typography(word).lower()
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


STOPWORDS = frozenset(
    """a an the of to in on at by for from with and or but nor as is are was were be been being am
    do does did doing have has had having it its this that these those there their they them he
    she his her him we our us you your i me my what which who whom whose when where why how
    into onto about over under after before during than then so such not no can could would
    should will shall may might must also just very more most other some any each many much
    said says say according""".split()
)


def keyword_terms(text: str) -> list[str]:
    """The searchable terms of a text: normalized words, stop words removed."""
    return [term for term in map(_term, _WORD.findall(text)) if term]


# Search re-reads the sentences of its best passages for every question: the same few thousand
# words again and again, so each word's term and stem are computed once (bounded caches).
@functools.lru_cache(maxsize=65536)
def _term(word: str) -> str:
    """A word's searchable term, or "" for a stop word."""
    word = normalize_word(word)
    if word.endswith("'s"):  # "Emma's" -> "emma": the text may say "Emma" (or "Emma's")
        word = word[:-2]
    return "" if word in STOPWORDS else word


@functools.lru_cache(maxsize=65536)
def term_stem(word: str) -> str:
    """A crude stem of a normalized word, for matching a question's terms in a sentence: crude but
    symmetric, as both sides are stemmed alike."""
    word = re.sub(r"['’]s$", "", word)  # "Kyiv's" is about Kyiv
    word = re.sub(r"ences?$", "ense", word)  # British and American spelling: defence, defense
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word
