"""Agreements: list, detail, create (vendor), register terms (vendor), reports, payouts and the
evidence bundles of closed periods."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from ..auth import Principal
from ..context import ApiContext
from ..deps import get_ctx, principal, vendor_writer
from ..models import (
    ADDRESS,
    AgreementDetail,
    AgreementSummary,
    CreateAgreement,
    Created,
    Error,
    Payout,
    ReportOut,
    TermsBody,
    TermsResult,
)

router = APIRouter(prefix="/v1/agreements", tags=["agreements"])
AddressPath = Annotated[str, Path(pattern=ADDRESS, description="the agreement's address")]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error}, 403: {"model": Error}, 404: {"model": Error}, 503: {"model": Error}}


@router.get("", response_model=list[AgreementSummary], responses=ERRORS,
            summary="Agreements visible to the caller, optionally filtered by vendor / customer")
def list_agreements(vendor: Annotated[str | None, Query(pattern=ADDRESS)] = None,
                    customer: Annotated[str | None, Query(pattern=ADDRESS)] = None,
                    who: Principal = Depends(principal), ctx: ApiContext = Depends(get_ctx)) -> list[AgreementSummary]:
    return ctx.list_agreements(who, vendor, customer)


@router.post("", response_model=Created, status_code=201, responses=ERRORS | {409: {"model": Error}},
             summary="Create an agreement for a customer from terms (vendor; deploys through the factory)")
def create(body: CreateAgreement, request: Request, who: Principal = Depends(vendor_writer),
           ctx: ApiContext = Depends(get_ctx)) -> Created:
    out = ctx.create(who, body)
    request.state.audit = out.model_dump(include={"address", "tx_hash", "terms_hash"})
    return out


@router.get("/{address}", response_model=AgreementDetail, responses=ERRORS,
            summary="Parties, asset, escrow, reserve, oracles, terms and schedule")
def detail(address: AddressPath, who: Principal = Depends(principal),
           ctx: ApiContext = Depends(get_ctx)) -> AgreementDetail:
    return ctx.detail(ctx.agreement(address, who))


@router.put("/{address}/terms", response_model=TermsResult, responses=ERRORS | {409: {"model": Error}},
            summary="Register the terms file of an agreement (must hash to its on-chain termsHash)")
def register_terms(address: AddressPath, body: TermsBody, request: Request,
                   who: Principal = Depends(vendor_writer), ctx: ApiContext = Depends(get_ctx)) -> TermsResult:
    out = ctx.register_terms(ctx.writable(address, who), body.terms)
    request.state.audit = {"terms_hash": out.terms_hash}
    return out


@router.get("/{address}/reports", response_model=list[ReportOut], responses=ERRORS,
            summary="Every accepted report: signed payload, signatures, tx hash, block, decoded event")
def reports(address: AddressPath, who: Principal = Depends(principal),
            ctx: ApiContext = Depends(get_ctx)) -> list[ReportOut]:
    return ctx.reports(ctx.agreement(address, who))


@router.get("/{address}/payouts", response_model=list[Payout], responses=ERRORS,
            summary="Every payout, claimable and debt entry from the chain logs")
def payouts(address: AddressPath, who: Principal = Depends(principal),
            ctx: ApiContext = Depends(get_ctx)) -> list[Payout]:
    return ctx.payouts(ctx.agreement(address, who))


@router.get("/{address}/periods/{period}/evidence", responses=ERRORS | {200: {"content": {"application/zip": {}}}},
            response_class=Response, summary="The evidence bundle of a closed period (zip)")
def evidence(address: AddressPath, period: Annotated[int, Path(ge=0, le=10_000)],
             who: Principal = Depends(principal), ctx: ApiContext = Depends(get_ctx)) -> Response:
    name, content = ctx.evidence_bundle(ctx.agreement(address, who), period)
    return Response(content, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
