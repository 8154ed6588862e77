"""Articles in: files, folders and JSONL lines become `Article` records.

The stored text is exactly the text as ingested. What is not the article's own (donation appeals,
image captions, links to other stories, a leading date or site name) is recorded as excluded
spans, so that it stays in the text, keeping every offset true, but never reaches the index.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Iterable, Iterator

from .errors import BadInput
from .records import Article, check_article_id, is_date, valid_unicode

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")

# A leading "date 2023-11-07" (as scraped pages often carry) gives the publication date.
_LEADING_DATE = re.compile(r"\A\s*(?:date|published|posted)[:\s]+(\d{4}-\d{2}-\d{2})\b\s*", re.IGNORECASE)
# "· RTE.ie" glued before the first sentence: the site the article was scraped from.
_SITE_MARK = re.compile(r"^[·•|]\s*([A-Za-z0-9\-]+(?:\.[a-z]{2,6})+)(?=[A-Z\s]|$)", re.MULTILINE)
_CAPTION = re.compile(r"\((?:Image|Images|Photo|Photos|Picture|Pictured|Credit|Video)s?\s*:[^)]*\)", re.IGNORECASE)
_PROMO = re.compile(
    r"^(?:read (?:the latest|more|next|also)|watch(?: live| now|:)|listen(?: now|:)|sign up|subscribe|"
    r"follow (?:us|our)|click here|related(?: articles?)?:|more:|advertisement|share this)",
    re.IGNORECASE,
)
_APPEAL_OPEN = re.compile(
    r"^(?:a message from\b|dear readers?\b|support (?:our|independent) journalism|before you go\b)",
    re.IGNORECASE,
)
_APPEAL_CLOSE = re.compile(r"^(?:remind me later|maybe later|donate now|subscribe now|not now)\W*$", re.IGNORECASE)
_APPEAL_WORDS = re.compile(
    r"\b(?:support(?:ing)?|donat\w+|contribut\w+|subscri\w+|journalis\w+|readers|monthly)\b", re.IGNORECASE
)


def read_paths(paths: Iterable[str | Path]) -> list[Article]:
    """Every article in the given files and folders, all read before anything is written.

    Raises `BadInput` naming the file for a path that does not exist, cannot be read, is not
    UTF-8, or holds a malformed JSONL line.
    """
    articles: list[Article] = []
    for path in map(Path, paths):
        if not path.exists():
            raise BadInput("not_found", f"{path}: no such file or folder")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + (".jsonl",))
            if not files:
                log.warning("%s holds no .txt, .md or .jsonl files", path)
        else:
            files = [path]
        for file in files:
            articles.extend(_read_file(file))
    return articles


def _read_file(path: Path) -> Iterator[Article]:
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES + (".jsonl",):
        raise BadInput("bad_file", f"{path}: not a .txt, .md or .jsonl file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadInput("unreadable", f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        # Decoding the bytes ourselves (not text mode) keeps line endings exactly as ingested.
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadInput("not_utf8", f"{path}: not UTF-8 text (bad byte at offset {error.start})") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write: a marker, not text
    if suffix == ".jsonl":
        for number, line in jsonl_lines(text):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise BadInput("bad_jsonl", f"{path}:{number}: not valid JSON ({error.msg})") from None
            try:
                yield make_article(record)
            except BadInput as error:
                raise BadInput(error.code, f"{path}:{number}: {error.message}") from None
    else:
        try:
            yield make_article({"id": path.stem, "text": text})
        except BadInput as error:
            raise BadInput(error.code, f"{path}: {error.message}") from None


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """The lines of a JSONL text that are not blank, numbered from 1. Lines end at "\\n" alone:
    `splitlines` would also end one at a U+2028, U+0085 or U+001C that another tool left
    unescaped inside a JSON string."""
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield number, line


def make_article(record: object) -> Article:
    """An `Article` from a JSON-like record `{"id", "text", "title"?, "published"?, "source"?, "url"?}`."""
    if not isinstance(record, dict):
        raise BadInput("bad_article", "an article must be a JSON object")
    article_id = record.get("id")
    text = record.get("text")
    try:
        # Any id a URL can carry encoded (as Elasticsearch takes ids): "Victoria_(Australia)",
        # "a/b", "Köln"; the API and the CLI share this one rule.
        check_article_id(article_id)
    except BadInput:
        raise BadInput(
            "bad_article", "an article needs an 'id': 1 to 512 characters, none of them a control character"
        ) from None
    if not isinstance(text, str) or not text.strip():
        raise BadInput("bad_article", f"article {article_id!r} has no text")
    for key in ("title", "published", "source", "url"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise BadInput("bad_article", f"article {article_id!r}: '{key}' must be a string")
    for key in ("id", "text", "title", "source", "url"):
        if isinstance(record.get(key), str) and not valid_unicode(record[key]):
            # JSON may carry a lone surrogate ("\ud800"), which SQLite cannot store.
            raise BadInput("bad_article", f"article {article_id!r}: '{key}' is not valid Unicode text")
    published = record.get("published") or None
    if published is not None and not is_date(published):
        raise BadInput("bad_article", f"article {article_id!r}: 'published' must be YYYY-MM-DD")
    return analyse(
        Article(
            id=article_id,
            text=text,
            title=(record.get("title") or "").strip(),
            published=published,
            source=record.get("source") or None,
            url=record.get("url") or None,
        )
    )


def analyse(article: Article) -> Article:
    """Fill in the title, date, source and excluded spans that the text itself carries."""
    text = article.text
    excluded: list[tuple[int, int]] = []
    published, source = article.published, article.source

    date = _LEADING_DATE.match(text)
    if date and is_date(date.group(1)):
        excluded.append((date.start(), date.end()))
        published = published or date.group(1)

    for line_start, line_end in _lines(text):
        line = text[line_start:line_end]
        site = _SITE_MARK.match(line)
        if site and line_start < 400:
            excluded.append((line_start, line_start + site.end()))
            source = source or site.group(1)
        elif _CAPTION.search(line) or (_PROMO.match(line.strip()) and _short_line(line)):
            excluded.append((line_start, line_end))
    excluded.extend(_alt_texts(text, excluded))
    excluded.extend(_appeal(text))

    title = article.title or _title(text, excluded)
    return Article(
        id=article.id,
        text=text,
        title=title,
        published=published,
        source=source,
        url=article.url,
        excluded=_merge(excluded),
    )


def _lines(text: str) -> list[tuple[int, int]]:
    spans, cursor = [], 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if body.strip():
            spans.append((cursor, cursor + len(body)))
        cursor += len(line)
    return spans


def _short_line(line: str, most_words: int = 12) -> bool:
    stripped = line.strip()
    return len(stripped.split()) <= most_words and not stripped.endswith((".", "!", "?", '"', "”"))


def _alt_texts(text: str, excluded: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A short line repeated at the start of the caption below it is the image's alt text."""
    spans = []
    lines = _lines(text)
    captions = {span for span in excluded}
    for (s, e), (ns, ne) in zip(lines, lines[1:]):
        line = text[s:e].strip()
        if (ns, ne) in captions and _short_line(line) and text[ns:ne].strip().startswith(line):
            spans.append((s, e))
    return spans


def _appeal(text: str) -> list[tuple[int, int]]:
    """A donation or subscription appeal, from its opening line to its "Remind me later."."""
    lines = _lines(text)
    spans = []
    for index, (s, e) in enumerate(lines):
        if not _APPEAL_CLOSE.match(text[s:e].strip()):
            continue
        first = index
        # Walk back to an opening line within a few paragraphs; failing that, take the run of
        # lines that speak of support, donations or subscriptions.
        openers = [
            back
            for back in range(max(0, index - 12), index)
            if _APPEAL_OPEN.match(text[lines[back][0]:lines[back][1]].strip())
        ]
        if openers:
            first = openers[0]
        else:
            while first > 0 and _APPEAL_WORDS.search(text[lines[first - 1][0]:lines[first - 1][1]]):
                first -= 1
        spans.append((lines[first][0], e))
    return spans


def _merge(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return tuple((s, e) for s, e in merged)


def kept_spans(article: Article, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `spans` outside the article's excluded spans, trimmed of white space."""
    out = []
    for s, e in spans:
        pieces = [(s, e)]
        for xs, xe in article.excluded:
            pieces = [p for a, b in pieces for p in ((a, min(b, xs)), (max(a, xe), b)) if p[1] > p[0]]
        for a, b in pieces:
            while a < b and article.text[a].isspace():
                a += 1
            while b > a and article.text[b - 1].isspace():
                b -= 1
            if any(c.isalnum() for c in article.text[a:b]):
                out.append((a, b))
    return out


def _title(text: str, excluded: list[tuple[int, int]]) -> str:
    """A first line that reads as a headline, else the first sentence (shortened)."""
    from .text import split_sentences

    article = Article(id="", text=text, excluded=_merge(excluded))
    lines = kept_spans(article, _lines(text))
    if not lines:
        return ""
    s, e = lines[0]
    first = text[s:e].strip().lstrip("#").strip()  # a Markdown heading's marks are not its words
    more_follows = len(lines) > 1
    if more_follows and len(first) <= 200 and len(first.split()) <= 20 and not first.endswith((".", ":", ";", ",")):
        return first
    sentences = kept_spans(article, split_sentences(text, s, e))
    sentence = text[sentences[0][0]:sentences[0][1]] if sentences else first
    if len(sentence) > 120:
        sentence = sentence[:120].rsplit(" ", 1)[0] + "…"
    return sentence
