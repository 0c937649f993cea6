"""The dashboard: a small static front end served by the same app. A page per agreement reads the
API with the caller's key (kept in the browser's session storage, never in a URL sent to the
server) and draws the burn chart with Chart.js, served from the npm package (no CDN)."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STATIC = Path(__file__).resolve().parent / "static"
CHART_JS = PROJECT_ROOT / "node_modules" / "chart.js" / "dist" / "chart.umd.js"

router = APIRouter(tags=["dashboard"], include_in_schema=False)


def _page(name: str) -> HTMLResponse:
    return HTMLResponse((STATIC / name).read_text(), headers={"Cache-Control": "no-store"})


@router.get("/", response_class=HTMLResponse)
@router.get("/dashboard", response_class=HTMLResponse)
def index() -> HTMLResponse:
    return _page("index.html")


@router.get("/dashboard/{address}", response_class=HTMLResponse)
def agreement_page(address: str) -> HTMLResponse:
    return _page("agreement.html")


@router.get("/static/vendor/chart.umd.js")
def chart_js() -> FileResponse:
    if not CHART_JS.exists():
        raise HTTPException(404, f"{CHART_JS} not found: run `npm ci` (chart.js is an npm dependency)")
    return FileResponse(CHART_JS, media_type="text/javascript")


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
