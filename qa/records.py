"""The records that cross stage boundaries.

Every offset is a Python string index (code points) into the article's stored text, end
exclusive, and travels unchanged from the article to the answer: a chunk knows where it sits,
a sentence knows where it sits, and an answer's citation is computed from them, never searched
for again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadInput

# A calendar-shaped date. Bounds are compared as text (YYYY-MM-DD sorts as dates do), so a
# bound such as 2023-02-31 simply means the end of February and needs no calendar check.
DATE_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"

# A day of the calendar, as an article's date must be (the pattern above passes 2023-02-30, a
# day no article was published on): months of 30 and 31 days, February's 28, and its 29th in leap
# years (divisible by 4, centuries only by 400). A pattern, not a date parse, so that the HTTP
# schema states exactly what is accepted; the year 0000 is the proleptic leap year 1 BC.
DAY_PATTERN = (r"^(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
               r"|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)$")


def is_date(value: object) -> bool:
    """Whether `value` is a day of the calendar written YYYY-MM-DD (`DAY_PATTERN`)."""
    return isinstance(value, str) and re.fullmatch(DAY_PATTERN, value) is not None


# An article id: 1 to 512 characters, none of them a control character (C0, DEL, C1).
ARTICLE_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]{1,512}$"


@dataclass(frozen=True)
class Article:
    """An article exactly as ingested, with what we learned about it."""

    id: str
    text: str
    title: str = ""
    published: str | None = None
    source: str | None = None
    url: str | None = None
    # Spans of the text that are not the article's own (donation appeals, image captions, links
    # to other stories). They stay in `text` so offsets stay true, but are never indexed or read.
    excluded: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Sentence:
    """One sentence of an article: `article.text[start:end] == text`."""

    article_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Chunk:
    """An indexed window of whole sentences: `article.text[start:end] == text`."""

    article_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with the article's title and the fused retrieval score."""

    article_id: str
    title: str
    start: int
    end: int
    text: str
    score: float
    # Ranks in each retriever (0 = best, None = not returned by it); the reader may use how well
    # retrieval supports a passage when deciding whether the articles answer at all.
    dense_rank: int | None = None
    keyword_rank: int | None = None
    dense_score: float | None = None
    # The article's own fields, for showing where a passage comes from.
    published: str | None = None
    source: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Citation:
    article_id: str
    title: str
    start: int
    end: int
    published: str | None = None
    source: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Context:
    """The sentence (or passage) that holds an answer, in the same article."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Answer:
    text: str
    score: float
    citation: Citation
    context: Context


@dataclass(frozen=True)
class Match:
    """Where an article states a given text (citation lookup)."""

    article_id: str
    title: str
    start: int
    end: int
    text: str
    kind: str  # "exact" | "near" | "semantic"
    score: float
    published: str | None = None
    source: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class IngestReport:
    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    chunks: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Filters:
    """Which articles a question, search, lookup or listing may draw on: all given conditions hold.

    Dates are YYYY-MM-DD, both ends inclusive; an article without a date passes no date bound.
    `source` is compared exactly, as `GET /sources` lists it. Empty `article_ids` means any.
    """

    published_from: str | None = None
    published_to: str | None = None
    source: str | None = None
    article_ids: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("published_from", "published_to"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not re.fullmatch(DATE_PATTERN, value)):
                raise BadInput("bad_filter", f"{name} must be a date YYYY-MM-DD")
        if self.source is not None and (not isinstance(self.source, str) or not self.source or not valid_unicode(self.source)):
            raise BadInput("bad_filter", "source must be a non-empty string")
        if isinstance(self.article_ids, str) or not all(isinstance(i, str) for i in self.article_ids):
            raise BadInput("bad_filter", "article_ids must be a list of article ids")
        for article_id in self.article_ids:
            check_article_id(article_id)
        # A list given by a caller becomes a tuple, so that the record stays hashable.
        object.__setattr__(self, "article_ids", tuple(dict.fromkeys(self.article_ids)))

    @property
    def active(self) -> bool:
        """Whether the filters leave out anything at all."""
        return bool(self.published_from or self.published_to or self.source or self.article_ids)


def check_article_id(article_id: object) -> str:
    """The id itself when it is 1 to 512 characters without control characters; else `BadInput`."""
    if not isinstance(article_id, str) or not re.fullmatch(ARTICLE_ID_PATTERN, article_id) or not valid_unicode(article_id):
        raise BadInput("bad_article_id", "an article id is 1 to 512 characters, none of them a control character")
    return article_id


def valid_unicode(text: str) -> bool:
    """Whether `text` is valid Unicode: JSON can carry a lone surrogate ("\\ud800"), which neither
    SQLite nor a JSON response can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class ArticleSummary:
    """An article as a listing shows it: no text, and how many chunks it was cut into."""

    id: str
    title: str
    published: str | None
    source: str | None
    url: str | None
    chunks: int


@dataclass(frozen=True)
class ArticleListing:
    """One page of a listing, and how many articles the whole listing holds."""

    total: int
    articles: tuple[ArticleSummary, ...]


@dataclass(frozen=True)
class SourceCount:
    source: str
    articles: int
