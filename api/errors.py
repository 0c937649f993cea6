"""The API's domain errors and the one table mapping every error a route may raise to its HTTP
status and detail. The app's exception handlers and the write audit log both read it."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException

from .adapters.chain import ChainUnavailable, ConfigNotFound, FactoryRefused, UnknownAgreement
from .adapters.engine import BeforeTerm, PeriodError
from .adapters.evidence import OperationalError
from .adapters.terms import TermsError, TermsUnknown


class Forbidden(PermissionError):
    """The caller's key may not read or write this agreement (403)."""


class Conflict(RuntimeError):
    """The request is valid but cannot be served in the current state (409)."""


Detail = Callable[[Any], Any]


def _message(exc: Exception) -> str:
    return str(exc)


def _database(exc: OperationalError) -> str:
    return f"database unreachable: {type(exc.orig).__name__}"


def _terms_field(exc: TermsError) -> list[dict[str, Any]]:
    loc = ["body", "terms", *[p for p in exc.field.replace("]", "").replace("[", ".").split(".") if p]]
    return [{"loc": loc, "msg": exc.message, "type": "terms_error", "field": exc.field}]


def _body_field(exc: FactoryRefused) -> list[dict[str, Any]]:
    return [{"loc": ["body", exc.field], "msg": exc.message, "type": "value_error", "field": exc.field}]


def _query_field(exc: PeriodError) -> list[dict[str, Any]]:
    return [{"loc": ["query", exc.field], "msg": exc.message, "type": "value_error", "field": exc.field}]


# exception type -> (HTTP status, its detail); the first matching row wins
DOMAIN_ERRORS: dict[type[Exception], tuple[int, Detail]] = {
    ChainUnavailable: (503, _message),
    OperationalError: (503, _database),
    UnknownAgreement: (404, _message),
    ConfigNotFound: (502, _message),  # the chain's logs lack the Config its storage points to
    Forbidden: (403, _message),
    Conflict: (409, _message),
    TermsUnknown: (409, _message),
    BeforeTerm: (409, _message),
    TermsError: (422, _terms_field),
    FactoryRefused: (422, _body_field),
    PeriodError: (422, _query_field),
}


def http_error(exc: BaseException) -> tuple[int, Any]:
    """(HTTP status, detail) of an error; (500, ...) for anything unexpected."""
    if isinstance(exc, HTTPException):
        return exc.status_code, exc.detail
    for exc_type, (code, detail) in DOMAIN_ERRORS.items():
        if isinstance(exc, exc_type):
            return code, detail(exc)
    return 500, "internal error"
