"""FastAPI dependencies (the cheap ones async, so a request makes one thread-pool hop, not three):
the app's context, the caller's key (X-API-Key or Bearer) and the vendor role for writes (every
write audit-logged, refused ones too, with the HTTP status of api.errors' table)."""
from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from .auth import Principal, record_write
from .context import ApiContext
from .errors import http_error

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


async def get_ctx(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


async def principal(key: str | None = Depends(api_key_header),
                    auth: HTTPAuthorizationCredentials | None = Depends(bearer),
                    ctx: ApiContext = Depends(get_ctx)) -> Principal:
    token = key or (auth.credentials if auth else None)
    if not token:
        raise HTTPException(401, "an API key is required (X-API-Key header or Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})
    found = ctx.keys.lookup(token)
    if found is None:
        raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return found


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
        code, detail = http_error(exc)
        record_write(ctx.engine, who, *where, code, {"error": detail})
        raise
    else:
        record_write(ctx.engine, who, *where, 200, getattr(request.state, "audit", {}))
