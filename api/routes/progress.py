"""The period's progress: month to date (KPI engine, as-of mode; the /status route), the cumulative
error budget burn with its forecast band, and the period's forecast (Monte Carlo)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from ..adapters.engine import DEFAULT_SIMS, MAX_SIMS, MIN_SIMS, PeriodError
from ..auth import Principal
from ..context import ApiContext
from ..deps import get_ctx, principal
from ..models import Burn, Error, Forecast, Status
from .agreements import ERRORS, AddressPath

router = APIRouter(prefix="/v1/agreements", tags=["status"])
AsOf = Annotated[datetime | None, Query(description="ISO-8601 instant (default: now); month to date up to it")]
Sims = Annotated[int, Query(ge=MIN_SIMS, le=MAX_SIMS, description="Monte Carlo runs of the forecast (fixed seed)")]


def _epoch(as_of: datetime | None) -> int | None:
    if as_of is None:
        return None
    if as_of.tzinfo is None:
        raise PeriodError("as_of", "needs a time zone offset (e.g. 2026-10-20T00:00:00Z)")
    try:
        return int(as_of.timestamp())
    except (OverflowError, OSError, ValueError):
        raise PeriodError("as_of", "out of range") from None


@router.get("/{address}/status", response_model=Status, responses=ERRORS | {409: {"model": Error}},
            summary="Month-to-date KPIs per objective and subject, error budget, burn rate, settled periods",
            name="status")  # the route's name keeps its OpenAPI operationId
async def month_to_date(address: AddressPath, as_of: AsOf = None, who: Principal = Depends(principal),
                 ctx: ApiContext = Depends(get_ctx)) -> Status:
    at = _epoch(as_of)
    return await run_in_threadpool(lambda: ctx.month_to_date(ctx.agreement(address, who), at))


@router.get("/{address}/status/burn", response_model=Burn, responses=ERRORS | {409: {"model": Error}},
            summary="Cumulative error budget burn per day of the month (the dashboard chart)")
def burn(address: AddressPath, as_of: AsOf = None,
         forecast: Annotated[bool, Query(description="add each subject's forecast band to period end")] = False,
         sims: Sims = DEFAULT_SIMS, who: Principal = Depends(principal),
         ctx: ApiContext = Depends(get_ctx)) -> Burn:
    return ctx.burn(ctx.agreement(address, who), _epoch(as_of), sims if forecast else None)


@router.get("/{address}/forecast", response_model=Forecast, responses=ERRORS | {409: {"model": Error}},
            summary="Forecast of the period's end: P(meet), 90% interval of attainment, expected credit per "
                    "objective and subject, and the open faults to fix first")
async def forecast(address: AddressPath, as_of: AsOf = None, sims: Sims = DEFAULT_SIMS,
                   who: Principal = Depends(principal), ctx: ApiContext = Depends(get_ctx)) -> Forecast:
    at = _epoch(as_of)
    return await run_in_threadpool(lambda: ctx.forecast(ctx.agreement(address, who), at, sims))
