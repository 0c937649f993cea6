"""The slacomp API and dashboard: `create_app(settings)` builds the FastAPI app (`slacomp api`
serves it with uvicorn). OpenAPI docs at /docs."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from . import dashboard
from .context import ApiContext
from .errors import DOMAIN_ERRORS, http_error
from .routes import agreements, health, progress, telemetry, terms
from .settings import ApiSettings, load_api_settings

log = logging.getLogger("slacomp.api")

DESCRIPTION = """SLA compensation agreements: parties, escrow, month-to-date KPIs, reports, payouts,
evidence bundles and telemetry ingest.

**Access.** Every `/v1` route needs an API key (`X-API-Key: <key>` or `Authorization: Bearer <key>`).
Roles: *vendor* reads and writes its own agreements, *customer* reads its own, *auditor* reads all.
`/health`, `/ready`, `/docs`, `/openapi.json` and the dashboard's static files are open (the dashboard
asks for a key). On-chain data stays public on the chain itself (`slacomp verify` needs no key)."""


def create_app(settings: ApiSettings | None = None, ctx: ApiContext | None = None) -> FastAPI:
    app = FastAPI(title="slacomp API", version="1", description=DESCRIPTION)
    app.state.ctx = ctx or ApiContext(settings or load_api_settings())

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        code, detail = http_error(exc)
        if code == 500:
            log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": detail}, status_code=code)

    for exc_type in DOMAIN_ERRORS:
        app.add_exception_handler(exc_type, domain_error)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors: list[dict[str, Any]] = []
        for e in exc.errors():
            item = {k: e[k] for k in ("loc", "msg", "type") if k in e}
            item["field"] = ".".join(str(p) for p in e.get("loc", ())[1:])
            errors.append(item)
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_exception_handler(RequestValidationError, validation_error)
    for router in (health.router, terms.router, agreements.router, progress.router, telemetry.router,
                   dashboard.router):
        app.include_router(router)
    dashboard.mount_static(app)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory: `uvicorn --factory api.app:app_from_env`."""
    return create_app(load_api_settings())
