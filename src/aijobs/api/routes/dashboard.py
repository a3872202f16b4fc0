"""The dashboard: a page at `/` and its static files, served without credentials.

The page holds no data; it calls the API, which asks for credentials when auth applies, and the
page then asks the user for a key. Nothing is built at run time: the files ship in the package,
the chart library vendored at a pinned version (static/vendor, with its licence).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent.parent / "static"

# Scripts, styles and everything else from this server only: no CDN, no inline script, so that a
# string from the API that slipped into the page as HTML still could not run. `data:` is the
# blank favicon. The page is framed by nobody.
POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # a new version of the page is seen on the next load
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=HEADERS)


class _Static(StaticFiles):
    """The page's files, with the page's headers (the policy covers its scripts too)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(HEADERS)
        return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", _Static(directory=STATIC), name="static")
