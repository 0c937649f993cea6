"""FastAPI dependencies (the cheap ones async, so a request makes one thread-pool hop, not three): the app's context, the caller's key (X-API-Key or Bearer), the vendor
role for writes (every write audit-logged, refused ones too), and the mapping of domain errors to
HTTP status codes."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError

from oracle.core.terms import TermsError
from oracle.engine.kpi import PeriodError

from .auth import Principal, record_write
from .chain_view import ChainUnavailable, UnknownAgreement
from .context import ApiContext, Conflict, Forbidden, Invalid
from .oracle_link import TermsUnknown

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


async def get_ctx(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


async def principal(key: str | None = Depends(api_key_header), auth: HTTPAuthorizationCredentials | None = Depends(bearer),
              ctx: ApiContext = Depends(get_ctx)) -> Principal:
    token = key or (auth.credentials if auth else None)
    if not token:
        raise HTTPException(401, "an API key is required (X-API-Key header or Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})
    found = ctx.keys.lookup(token)
    if found is None:
        raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return found


def status_of(exc: BaseException) -> tuple[int, Any]:
    """(HTTP status, detail) of a domain error; (500, ...) for anything unexpected."""
    if isinstance(exc, HTTPException):
        return exc.status_code, exc.detail
    if isinstance(exc, ChainUnavailable):
        return 503, str(exc)
    if isinstance(exc, OperationalError):
        return 503, f"database unreachable: {type(exc.orig).__name__}"
    if isinstance(exc, UnknownAgreement):
        return 404, str(exc)
    if isinstance(exc, Forbidden):
        return 403, str(exc)
    if isinstance(exc, (Conflict, TermsUnknown)):
        return 409, str(exc)
    if isinstance(exc, TermsError):
        loc = ["body", "terms", *[p for p in exc.field.replace("]", "").replace("[", ".").split(".") if p]]
        return 422, [{"loc": loc, "msg": exc.message, "type": "terms_error", "field": exc.field}]
    if isinstance(exc, Invalid):
        return 422, [{"loc": ["body", exc.field], "msg": exc.message, "type": "value_error", "field": exc.field}]
    if isinstance(exc, PeriodError):
        return 422, [{"loc": ["query", exc.field], "msg": exc.message, "type": "value_error", "field": exc.field}]
    return 500, "internal error"


def vendor_writer(request: Request, who: Principal = Depends(principal),
                  ctx: ApiContext = Depends(get_ctx)) -> Iterator[Principal]:
    """Writes need the vendor role; the outcome of every write attempt is audit-logged."""
    agreement = request.path_params.get("address")
    where = (request.method, request.url.path, agreement)
    if who.role != "vendor":
        record_write(ctx.engine, who, *where, 403, {"reason": "role"})
        raise HTTPException(403, f"writes need the vendor role; key {who.key_id!r} is {who.role}")
    try:
        yield who
    except BaseException as exc:
        code, detail = status_of(exc)
        record_write(ctx.engine, who, *where, code, {"error": detail})
        raise
    else:
        record_write(ctx.engine, who, *where, 200, getattr(request.state, "audit", {}))
