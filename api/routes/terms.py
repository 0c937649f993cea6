"""Terms files: validate (canonical form and termsHash, or the offending field)."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from ..adapters.terms import parse_terms, summary
from ..auth import Principal
from ..deps import principal
from ..models import Error, TermsBody, TermsResult

router = APIRouter(prefix="/v1/terms", tags=["terms"])


@router.post("/validate", response_model=TermsResult, responses={422: {"model": Error}},
             summary="Validate a terms file; returns its canonical form and termsHash")
def validate(body: TermsBody, _: Principal = Depends(principal)) -> TermsResult:
    return summary(parse_terms(body.terms))
