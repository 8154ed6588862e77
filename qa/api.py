"""The HTTP API (reference: docs/API.md, generated from this app's schema): a thin shell over one `Engine`."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time, and
# the request models are made inside create_app, out of reach of string annotations.
import hmac
import logging
import time
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Match as RouteMatch
from starlette.types import ASGIApp, Receive, Scope, Send

from . import api_models as models
from .engine import MAX_OFFSET, Engine
from .errors import QAError
from .records import ARTICLE_ID_PATTERN, DATE_PATTERN, DAY_PATTERN, Answer, Article, ArticleSummary, Filters, Match, Passage
from .web import PAGE_PATHS, mount_page

log = logging.getLogger(__name__)

# Paths anyone may call when QA_API_KEY is set: the health check and the page's own files
# (the page then asks for the key before its data calls).
OPEN_PATHS = frozenset(("/health", *PAGE_PATHS))

# What a value that fails a pattern should have been, in words (the pattern itself is in the schema).
PATTERNS_SAID = {
    DATE_PATTERN: "must be a date YYYY-MM-DD",
    DAY_PATTERN: "must be a day of the calendar, YYYY-MM-DD",
    ARTICLE_ID_PATTERN: "must be 1 to 512 characters, none of them a control character",
    models.NOT_BLANK: "must hold a character that is not white space",
}

# What each error status means; every endpoint declares the ones it can give, with the error body.
ERRORS = {
    400: "bad input: a malformed or out-of-range parameter, or a body that is not valid JSON",
    401: "QA_API_KEY is set and the request lacks `Authorization: Bearer <key>` or has another key",
    404: "no such article",
    409: "another process is writing to the index, or the index was built with another model; try again",
    413: "the request body is larger than QA_MAX_BODY_BYTES",
    500: "a fault of the server (logged)",
    503: "a file of the index or of a model is damaged; the message names it and what to do",
    507: "the disk refused the write (full, or an I/O error); nothing of the change was kept",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    declared: dict[int | str, dict[str, Any]] = {s: {"model": models.ErrorBody, "description": ERRORS[s]} for s in statuses}
    if 401 in declared:
        declared[401]["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
    return declared


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}}, headers=headers)


# -- JSON of the records (the CLI's --json prints the same) --------------------------------------

def _article_fields(record: Any) -> dict[str, str]:
    """published, source and url where the article has them; left out, never null, where not."""
    return {key: getattr(record, key) for key in ("published", "source", "url") if getattr(record, key)}


def answer_json(answer: Answer) -> dict[str, Any]:
    c = answer.citation
    return {
        "text": answer.text,
        "score": round(answer.score, 4),
        "citation": {"article_id": c.article_id, "title": c.title, "start": c.start, "end": c.end, **_article_fields(c)},
        "context": asdict(answer.context),
    }


def passage_json(passage: Passage) -> dict[str, Any]:
    return {
        "article_id": passage.article_id,
        "title": passage.title,
        "text": passage.text,
        "start": passage.start,
        "end": passage.end,
        "score": round(passage.score, 6),
        **_article_fields(passage),
    }


def match_json(match: Match) -> dict[str, Any]:
    return {
        "article_id": match.article_id,
        "title": match.title,
        "start": match.start,
        "end": match.end,
        "text": match.text,
        "kind": match.kind,
        "score": round(match.score, 4),
        **_article_fields(match),
    }


def article_json(article: Article) -> dict[str, Any]:
    return {"id": article.id, "title": article.title, "text": article.text, **_article_fields(article)}


def summary_json(summary: ArticleSummary) -> dict[str, Any]:
    return {"id": summary.id, "title": summary.title, **_article_fields(summary), "chunks": summary.chunks}


# -- the key and the body cap, before any route ---------------------------------------------------

class RequestGuard:
    """Checks the API key and caps the request body, before the request reaches a route.

    The body is read here, counted as it streams in, and handed on whole: a body sent without
    a Content-Length (chunked) is capped as surely as one that declares its size.
    """

    def __init__(self, app: ASGIApp, api_key: str, max_body_bytes: int):
        self.app = app
        self.api_key = api_key.encode("utf-8")
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope["headers"]}
        if self.api_key and scope["path"] not in OPEN_PATHS and not self._authorized(headers.get(b"authorization", b"")):
            await _error(401, "unauthorized", "this service needs 'Authorization: Bearer <key>' (QA_API_KEY)",
                         {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _error(400, "bad_request", "Content-Length is not a number")(scope, receive, send)
                return
            if int(declared) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, key = header.partition(b" ")
        # compare_digest: the time taken does not tell how much of a guessed key was right.
        return scheme.lower() == b"bearer" and hmac.compare_digest(key.strip(), self.api_key)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is larger than {self.max_body_bytes:,} bytes (QA_MAX_BODY_BYTES)"
        await _error(413, "too_large", message, {"Connection": "close"})(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then whatever the client sends next."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _allowed_methods(app: FastAPI, scope: Scope) -> str:
    """Every method some route takes at this path (routes of one path are separate objects)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)  # PARTIAL: the path matches, the method does not
        if match != RouteMatch.NONE and getattr(route, "methods", None):
            methods |= route.methods
    return ", ".join(sorted(methods))


class _AnyText(Convertor):
    """A path parameter that takes the rest of the path, `/` and line breaks too (Starlette's `path`
    stops at a line break), so that every id reaches its check and a bad one gets a 400, not a 404."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())


# -- the app ------------------------------------------------------------------------------------

def create_app(engine: Engine) -> FastAPI:
    """The API over `engine`; the engine is built (and its index opened) by the caller."""
    settings = engine.settings
    AskRequest, CiteRequest = models.request_models(settings.max_question_chars)
    app = FastAPI(
        title="News QA",
        description="Semantic search, extractive question answering and citation lookup over news "
        "articles. Every answer cites its article with exact character offsets: "
        "`article.text[start:end] == text`.",
        version="1.1.0",
    )

    @app.exception_handler(QAError)
    async def _qa_error(request: Request, error: QAError):
        log.info("%s %s -> %d %s", request.method, request.url.path, error.status, error.code)
        return _error(error.status, error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        errors = list(error.errors())
        # POST /articles takes one article or a batch (a union: locations start with the form's
        # name). Judge a body by the form it fits: the errors of a form that misses one of its own
        # fields go while another form's remain, so {"articles": []} hears of the empty batch.
        unfit = {e["loc"][:2] for e in errors if e.get("type") == "missing" and len(e.get("loc", ())) == 3}
        errors = [e for e in errors if e.get("loc", ())[:2] not in unfit] or errors
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        if first.get("type") == "json_invalid":
            return _error(400, "bad_json", "the request body is not valid JSON")
        said = PATTERNS_SAID.get((first.get("ctx") or {}).get("pattern"), first.get("msg", "invalid"))
        message = f"{where}: {said}" if where else first.get("msg", "invalid request")
        return _error(400, "bad_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = _allowed_methods(app, request.scope)
        return _error(error.status_code, code, str(error.detail), headers)

    @app.exception_handler(Exception)
    async def _fault(request: Request, error: Exception):
        log.exception("fault serving %s %s", request.method, request.url.path)
        return _error(500, "internal", "the server failed to answer; the fault is logged")

    @app.middleware("http")
    async def _timing(request: Request, call_next):
        began = time.perf_counter()
        response = await call_next(request)
        log.debug("%s %s %d %.1fms", request.method, request.url.path, response.status_code, (time.perf_counter() - began) * 1000)
        return response

    app.add_middleware(RequestGuard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)

    # Query parameters of the filters, shared by GET /search and GET /articles.
    PublishedFrom = Annotated[str | None, Query(pattern=DATE_PATTERN, description="only articles published on or after this date (YYYY-MM-DD)")]
    PublishedTo = Annotated[str | None, Query(pattern=DATE_PATTERN, description="only articles published on or before this date (YYYY-MM-DD)")]
    Source = Annotated[str | None, Query(min_length=1, description="only articles of this source, exactly as GET /sources lists it")]
    ArticleIdParam = Annotated[str, Path(pattern=ARTICLE_ID_PATTERN, description="the article's id, URL-encoded (`a%2Fb` for `a/b`)")]

    @app.get("/health", response_model=models.HealthResponse, responses=_errors(500))
    def health():
        """Whether the service is up, and how much it holds. Needs no key."""
        return engine.health()

    @app.post("/ask", response_model=models.AskResponse, response_model_exclude_none=True,
              responses=_errors(400, 401, 409, 413, 500, 503))
    def ask(body: AskRequest):  # type: ignore[valid-type]
        """Short answers lifted word for word from the articles, best first; [] means no answer."""
        answers = engine.ask(body.question, body.top_k, _filters(body))
        log.info("ask %r -> %d answers", body.question[:80], len(answers))
        return {"question": body.question, "answers": [answer_json(a) for a in answers]}

    @app.get("/search", response_model=models.SearchResponse, response_model_exclude_none=True,
             responses=_errors(400, 401, 409, 500, 503))
    def search(
        q: Annotated[str, Query(min_length=1, max_length=settings.max_question_chars, pattern=models.NOT_BLANK, description="what to look for")],
        k: Annotated[int, Query(ge=1, le=100, description="how many passages, 1..100")] = 10,
        published_from: PublishedFrom = None,
        published_to: PublishedTo = None,
        source: Source = None,
        article_ids: Annotated[list[models.ArticleId], Query(max_length=models.MAX_FILTER_IDS, description="only these articles (repeat the parameter)")] = [],
    ):
        """Passages of articles, best first (dense and keyword retrieval, fused)."""
        filters = Filters(published_from, published_to, source, tuple(article_ids))
        return {"query": q, "results": [passage_json(p) for p in engine.search(q, k, filters)]}

    @app.post("/cite", response_model=models.CiteResponse, response_model_exclude_none=True,
              responses=_errors(400, 401, 409, 413, 500, 503))
    def cite(body: CiteRequest):  # type: ignore[valid-type]
        """Where the articles state a quote or a claim: exact, near or semantic matches."""
        return {"text": body.text, "matches": [match_json(m) for m in engine.cite(body.text, body.k, _filters(body))]}

    @app.get("/articles", response_model=models.ArticleList, response_model_exclude_none=True,
             responses=_errors(400, 401, 409, 500, 503))
    def list_articles(
        published_from: PublishedFrom = None,
        published_to: PublishedTo = None,
        source: Source = None,
        limit: Annotated[int, Query(ge=1, le=100, description="articles on this page, 1..100")] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="articles skipped before this page")] = 0,
    ):
        """The articles, newest first (undated last), then by id; paged and filterable."""
        listing = engine.list_articles(Filters(published_from, published_to, source), limit, offset)
        return {"total": listing.total, "offset": offset, "limit": limit, "articles": [summary_json(a) for a in listing.articles]}

    @app.get("/sources", response_model=models.SourcesResponse, responses=_errors(401, 409, 500, 503))
    def sources():
        """Every source the articles name, with how many articles each has (for a source filter)."""
        return {"sources": [{"source": s.source, "articles": s.articles} for s in engine.sources()]}

    @app.get("/articles/{article_id:anytext}", response_model=models.ArticleOut, response_model_exclude_none=True,
             responses=_errors(400, 401, 404, 500, 503))
    def get_article(article_id: ArticleIdParam):
        """The article as stored."""
        return article_json(engine.article(article_id))

    @app.post("/articles", status_code=201, response_model=models.IngestResponse,
              responses={200: {"model": models.IngestResponse, "description": "every article replaced one held already"},
                         **_errors(400, 401, 409, 413, 500, 503, 507)})
    def post_articles(body: models.ArticleIn | models.ArticleBatch):
        """One article, or `{"articles": [...]}`; an id already held is replaced. 201 when any is new."""
        records = body.articles if isinstance(body, models.ArticleBatch) else [body]
        report = engine.ingest_records([r.model_dump(exclude_none=True) for r in records])
        return JSONResponse(
            status_code=201 if report.added else 200,
            content={"added": list(report.added), "replaced": list(report.replaced), "chunks": report.chunks},
        )

    @app.delete("/articles/{article_id:anytext}", response_model=models.DeleteResponse,
                responses=_errors(400, 401, 404, 409, 500, 503, 507))
    def delete_article(article_id: ArticleIdParam):
        """Removes the article from the index."""
        engine.delete(article_id)
        return {"deleted": article_id}

    mount_page(app)
    app.openapi = lambda: _openapi(app, bool(settings.api_key))  # type: ignore[method-assign]
    return app


def _filters(body: models.FilterFields) -> Filters:
    return Filters(body.published_from, body.published_to, body.source, tuple(body.article_ids))


def _openapi(app: FastAPI, keyed: bool) -> dict[str, Any]:
    """The schema as the service really answers: errors are 400 (never FastAPI's 422), and when a
    key is set, every operation but /health declares the bearer scheme."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            if keyed and path != "/health":
                operation["security"] = [{"bearer": []}]
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    if keyed:
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "the QA_API_KEY of the service"}
        }
    app.openapi_schema = schema
    return schema
