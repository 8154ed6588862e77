"""The web page: three static files served by the API at `/` and `/static/`.

No build step and nothing fetched from elsewhere (the service runs offline); the page talks to
the service only through its public HTTP API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

__all__ = ["PAGE_PATHS", "mount_page"]

FOLDER = Path(__file__).resolve().parent
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The paths of the page itself, which need no API key (its data calls do).
PAGE_PATHS = ("/", *(f"/static/{name}" for name in STATIC_FILES))

# The page loads nothing but its own files, and article text never runs as code.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate (cheap: ETag) so that a new version of the page is seen at once.
    "Cache-Control": "no-cache",
}


def mount_page(app: FastAPI) -> None:
    """Serve the page at `GET /` and its script and style at `GET /static/{name}`."""

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(FOLDER / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        # A fixed list, not the folder: nothing else in it (this module) is served.
        if name not in STATIC_FILES:
            raise HTTPException(status_code=404, detail=f"no static file {name!r}")
        return FileResponse(FOLDER / name, media_type=STATIC_FILES[name], headers=PAGE_HEADERS)
