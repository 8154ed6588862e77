"""The HTTP API of ../shared/CONTRACT.md: a thin shell over one `Engine`."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import Engine
from .errors import QAError
from .records import Answer, Article, Match, Passage
from .web import mount_page

log = logging.getLogger(__name__)


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: StrictStr = Field(description="a question in plain language, at most 2,000 characters")
    top_k: StrictInt | None = Field(default=None, description="how many answers, 1..100")


class CiteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(description="a quote or a claim, at most 2,000 characters")
    k: StrictInt = Field(default=5, description="how many matches, 1..100")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "text": answer.text,
        "score": round(answer.score, 4),
        "citation": asdict(answer.citation),
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
    }


def match_json(match: Match) -> dict[str, Any]:
    return {**asdict(match), "score": round(match.score, 4)}


def article_json(article: Article) -> dict[str, Any]:
    body = {"id": article.id, "title": article.title, "text": article.text}
    for key in ("published", "source", "url"):
        if getattr(article, key):
            body[key] = getattr(article, key)
    return body


def create_app(engine: Engine) -> FastAPI:
    """The API over `engine`; the engine is built (and its index opened) by the caller."""
    app = FastAPI(
        title="News QA",
        description="Semantic search, extractive question answering and citation lookup over news "
        "articles. Every answer cites its article with exact character offsets.",
        version="1.0.0",
    )

    @app.exception_handler(QAError)
    async def _qa_error(request: Request, error: QAError):
        log.info("%s %s -> %d %s", request.method, request.url.path, error.status, error.code)
        return _error(error.status, error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "json_invalid":
            return _error(400, "bad_json", "the request body is not valid JSON")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid request")
        return _error(400, "bad_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return _error(error.status_code, code, str(error.detail))

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

    @app.get("/health")
    def health():
        """Whether the service is up, and how much it holds."""
        return engine.health()

    @app.post("/ask")
    def ask(body: AskRequest):
        """Short answers lifted word for word from the articles, best first; [] means no answer."""
        answers = engine.ask(body.question, body.top_k)
        log.info("ask %r -> %d answers", body.question[:80], len(answers))
        return {"question": body.question, "answers": [answer_json(a) for a in answers]}

    @app.get("/search")
    def search(q: str = Query(description="what to look for"), k: int = Query(10, description="how many passages, 1..100")):
        """Passages of articles, best first (dense and keyword retrieval, fused)."""
        return {"query": q, "results": [passage_json(p) for p in engine.search(q, k)]}

    @app.post("/cite")
    def cite(body: CiteRequest):
        """Where the articles state a quote or a claim: exact, near or semantic matches."""
        return {"text": body.text, "matches": [match_json(m) for m in engine.cite(body.text, body.k)]}

    @app.get("/articles/{article_id}")
    def get_article(article_id: str):
        return article_json(engine.article(article_id))

    @app.post("/articles")
    def post_articles(body: Any = Body(description='one article {"id", "text", "title"?, ...}, or {"articles": [...]}')):
        """One article, or `{"articles": [...]}`; an id already held is replaced."""
        records = body.get("articles") if isinstance(body, dict) and "articles" in body else [body]
        if not isinstance(records, list) or not records:
            return _error(400, "bad_article", "'articles' must be a non-empty list of articles")
        report = engine.ingest_records(records)
        return JSONResponse(
            status_code=201 if report.added else 200,
            content={"added": list(report.added), "replaced": list(report.replaced), "chunks": report.chunks},
        )

    @app.delete("/articles/{article_id}")
    def delete_article(article_id: str):
        engine.delete(article_id)
        return {"deleted": article_id}

    mount_page(app)
    return app
