"""Liveness and readiness (open: no key needed)."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..context import ApiContext
from ..deps import get_ctx
from ..models import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="The process is up")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}},
            summary="Chain and database reachable")
def ready(ctx: ApiContext = Depends(get_ctx)) -> JSONResponse:
    readiness = ctx.readiness()
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)
