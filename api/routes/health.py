"""Liveness and readiness (open: no key needed)."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..context import ApiContext
from ..deps import get_ctx, status_of
from ..models import Health, Readiness
from ..oracle_link import ping

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="The process is up")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}},
            summary="Chain and database reachable")
def ready(ctx: ApiContext = Depends(get_ctx)) -> JSONResponse:
    chain: dict[str, object] = {"url": ctx.settings.rpc_url}
    database: dict[str, object] = {"dialect": ctx.engine.dialect.name}
    try:
        chain |= {"ok": True, "block": ctx.chain.block(), "chain_id": ctx.chain.chain_id}
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        chain |= {"ok": False, "error": str(status_of(exc)[1]) if status_of(exc)[0] != 500 else type(exc).__name__}
    try:
        ping(ctx.engine)
        database["ok"] = True
    except Exception as exc:  # noqa: BLE001
        database |= {"ok": False, "error": type(exc).__name__}
    ok = bool(chain["ok"] and database["ok"])
    return JSONResponse({"ready": ok, "chain": chain, "database": database}, status_code=200 if ok else 503)
