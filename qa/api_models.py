"""The shapes of the HTTP API: what each endpoint takes and gives, as the OpenAPI schema shows it.

Request constraints live here, in the schema, so that a client generated from it refuses what the
service would refuse (an empty question, k out of 1..100, a malformed date). The engine checks
the same again, for the CLI and for Python callers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Interval
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from .records import ARTICLE_ID_PATTERN, DATE_PATTERN, DAY_PATTERN

# Holds a character that is not white space: the engine refuses a blank question as empty.
NOT_BLANK = r"\S"
# Most article ids one filter may name (they travel in one request).
MAX_FILTER_IDS = 1000


def _whole_number(value: object) -> object:
    # JSON Schema counts 23.0 as an integer, so it is taken as 23; a string ("3") or a boolean is
    # refused, as a client that sends one has a bug worth hearing about.
    if isinstance(value, (str, bool)):
        raise ValueError("must be a whole number, not a string or a boolean")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value



ArticleId = Annotated[str, StringConstraints(pattern=ARTICLE_ID_PATTERN)]
Date = Annotated[str, StringConstraints(pattern=DATE_PATTERN)]  # a bound: 2023-02-31 is the end of February
Day = Annotated[str, StringConstraints(pattern=DAY_PATTERN)]  # an article's date: a day of the calendar
# A field that is left out of the JSON when the article has no such value (never null).
Absent = SkipJsonSchema[None]


# -- errors ---------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    code: str = Field(description="a stable, machine-readable name, e.g. bad_request, not_found, unauthorized")
    message: str = Field(description="one line for a person")


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- requests -------------------------------------------------------------------------------

class FilterFields(BaseModel):
    """Which articles may answer: every given condition holds; none given means all articles."""

    # Python's `re`, as the engine's own checks use, so that "blank" means the same to both.
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    published_from: Date | None = Field(default=None, description="only articles published on or after this date (YYYY-MM-DD)")
    published_to: Date | None = Field(default=None, description="only articles published on or before this date (YYYY-MM-DD)")
    source: Annotated[str, StringConstraints(min_length=1)] | None = Field(default=None, description="only articles of this source, exactly as GET /sources lists it")
    article_ids: list[ArticleId] = Field(default=[], max_length=MAX_FILTER_IDS, description="only these articles")


def request_models(max_chars: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """(AskRequest, CiteRequest) for questions and texts of at most `max_chars` characters."""
    Text = Annotated[StrictStr, StringConstraints(min_length=1, max_length=max_chars, pattern=NOT_BLANK)]
    Count = Annotated[int, Interval(ge=1, le=100), BeforeValidator(_whole_number)]

    class AskRequest(FilterFields):
        question: Text = Field(description=f"a question in plain language, at most {max_chars:,} characters")
        top_k: Count | None = Field(default=None, description="how many answers, 1..100 (default: QA_TOP_K, 3)")

    class CiteRequest(FilterFields):
        text: Text = Field(description=f"a quote or a claim, at most {max_chars:,} characters")
        k: Count = Field(default=5, description="how many matches, 1..100")

    return AskRequest, CiteRequest


class ArticleIn(BaseModel):
    """An article to add, or to replace when its id is held already. Other fields are ignored."""

    model_config = ConfigDict(regex_engine="python-re")

    id: StrictStr = Field(pattern=ARTICLE_ID_PATTERN, description="1 to 512 characters, no control characters")
    text: StrictStr = Field(pattern=NOT_BLANK, description="the article's text, stored exactly as given")
    title: StrictStr | None = Field(default=None, description="found in the text when not given")
    published: Day | None = Field(default=None, description="YYYY-MM-DD, a day of the calendar; found in a leading 'date 2023-11-07' when not given")
    source: StrictStr | None = Field(default=None, description="the outlet; found in a glued site name ('· RTE.ie') when not given")
    url: StrictStr | None = None


class ArticleBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    articles: list[ArticleIn] = Field(min_length=1, description="added or replaced in one change")


# -- responses ------------------------------------------------------------------------------

# The article's date, source and address travel with every result that names an article; each
# is left out of the JSON when the article has none. (Written out in each shape, not inherited,
# so that they come after the fields that say what the result is.)
PUBLISHED = Field(default=None, description="YYYY-MM-DD; left out when the article has no date")
SOURCE = Field(default=None, description="left out when the article has no source")
URL = Field(default=None, description="left out when the article has no address")


class CitationOut(BaseModel):
    article_id: str
    title: str
    start: int = Field(description="article.text[start:end] is the answer's text")
    end: int
    published: str | Absent = PUBLISHED
    source: str | Absent = SOURCE
    url: str | Absent = URL


class ContextOut(BaseModel):
    text: str = Field(description="the sentence (or passage) that holds the answer")
    start: int
    end: int


class AnswerOut(BaseModel):
    text: str
    score: float
    citation: CitationOut
    context: ContextOut


class AskResponse(BaseModel):
    question: str
    answers: list[AnswerOut] = Field(description="best first; empty when the articles hold no answer")


class PassageOut(BaseModel):
    article_id: str
    title: str
    text: str = Field(description="article.text[start:end]")
    start: int
    end: int
    score: float
    published: str | Absent = PUBLISHED
    source: str | Absent = SOURCE
    url: str | Absent = URL


class SearchResponse(BaseModel):
    query: str
    results: list[PassageOut] = Field(description="best first")


class MatchOut(BaseModel):
    article_id: str
    title: str
    start: int
    end: int
    text: str = Field(description="article.text[start:end]")
    kind: Literal["exact", "near", "semantic"]
    score: float
    published: str | Absent = PUBLISHED
    source: str | Absent = SOURCE
    url: str | Absent = URL


class CiteResponse(BaseModel):
    text: str
    matches: list[MatchOut] = Field(description="best first; empty when no article supports the text")


class ArticleOut(BaseModel):
    id: str
    title: str
    text: str = Field(description="exactly as ingested; every offset indexes this text")
    published: str | Absent = PUBLISHED
    source: str | Absent = SOURCE
    url: str | Absent = URL


class ArticleSummaryOut(BaseModel):
    id: str
    title: str
    published: str | Absent = PUBLISHED
    source: str | Absent = SOURCE
    url: str | Absent = URL
    chunks: int = Field(description="how many indexed chunks the article was cut into")


class ArticleList(BaseModel):
    total: int = Field(description="articles the filters keep, on all pages")
    offset: int
    limit: int
    articles: list[ArticleSummaryOut] = Field(description="newest first (undated last), then by id")


class SourceOut(BaseModel):
    source: str
    articles: int


class SourcesResponse(BaseModel):
    sources: list[SourceOut] = Field(description="by name")


class IngestResponse(BaseModel):
    added: list[str]
    replaced: list[str]
    chunks: int = Field(description="chunks indexed for these articles")


class DeleteResponse(BaseModel):
    deleted: str


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["ok"]
    articles: int
    chunks: int
    model: str
    dimension: int
    reader: str
    generation: int
    rebuild_advised: bool = Field(description="the index was cut by an older chunking rule; `qa rebuild` updates it")
