"""Telemetry ingest for an agreement (vendor or its device platform, with a vendor key): events,
inventory, exclusions and tickets as JSON or CSV, in batches of bounded size. The oracle's
ingest validates every row; rejected rows come back with their position, field and reason."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from ..adapters.evidence import columns
from ..auth import Principal
from ..context import ApiContext
from ..deps import get_ctx, vendor_writer
from ..models import Error, IngestOutcome
from .agreements import ERRORS, AddressPath

router = APIRouter(prefix="/v1/agreements", tags=["telemetry"])
Kind = Literal["events", "inventory", "exclusions", "tickets"]

_ROW = {"type": "object", "additionalProperties": {"type": ["string", "integer", "null"]}}
BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"oneOf": [
        {"type": "array", "items": _ROW},
        {"type": "object", "properties": {"rows": {"type": "array", "items": _ROW}}, "required": ["rows"]}]},
        "example": [{"ts": "2026-10-01T08:00:00Z", "device_id": "N1", "state": "available"}]},
    "text/csv": {"schema": {"type": "string"}, "example": "ts,device_id,state\n2026-10-01T08:00:00Z,N1,available\n"},
}}}


def _invalid(msg: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body"], "msg": msg, "type": "value_error"}])


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of {limit} bytes; split the batch")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body is over the limit of {limit} bytes; split the batch")
        chunks.append(chunk)
    return b"".join(chunks)


Rows = list[dict[str, Any]]


def parse_rows(body: bytes, content_type: str, kind: str) -> tuple[Rows, Rows, list[int]]:
    """(rows, errors, positions of the rows in the batch): JSON (a list of objects, or {"rows": [...]})
    or CSV with a header row. CSV rows whose cell count differs from the header are returned as errors
    and not ingested."""
    media = content_type.split(";")[0].strip().lower()
    if media in ("application/json", ""):
        try:
            data = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _invalid(f"not valid JSON: {exc}") from None
        rows = data.get("rows") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise _invalid('expected a JSON array of rows, or an object {"rows": [...]}')
        return rows, [], list(range(1, len(rows) + 1))
    if media in ("text/csv", "application/csv"):
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _invalid(f"CSV is not UTF-8: {exc}") from None
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            raise _invalid("empty CSV: a header row is required")
        header = [h.strip() for h in header]
        missing = [c for c in columns(kind)[:1] if c not in header]
        if missing:
            raise _invalid(f"CSV header lacks {', '.join(missing)} (columns: {', '.join(columns(kind))})")
        parsed: Rows = []
        errors: Rows = []
        positions: list[int] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            position = len(parsed) + len(errors) + 1
            if len(cells) != len(header):
                errors.append({"row": position, "field": "(row)",
                               "reason": f"has {len(cells)} fields, the header has {len(header)}"})
                continue
            parsed.append(dict(zip(header, cells)))
            positions.append(position)
        return parsed, errors, positions
    raise HTTPException(415, f"unsupported content type {media!r}: use application/json or text/csv")


@router.post("/{address}/telemetry/{kind}", response_model=IngestOutcome, openapi_extra=BODY,
             responses=ERRORS | {409: {"model": Error}, 413: {"model": Error}, 415: {"model": Error},
                                 422: {"model": Error}},
             summary="Ingest events, inventory, exclusions or tickets (JSON or CSV)")
async def ingest(address: AddressPath, kind: Kind, request: Request, who: Principal = Depends(vendor_writer),
                 ctx: ApiContext = Depends(get_ctx)) -> IngestOutcome:
    settings = ctx.settings
    body = await _read_limited(request, settings.max_body_bytes)
    rows, errors, positions = parse_rows(body, request.headers.get("content-type", ""), kind)
    if len(rows) + len(errors) > settings.max_batch_rows:
        raise HTTPException(413, f"{len(rows) + len(errors)} rows is over the limit of {settings.max_batch_rows} "
                                 "rows per batch; split the batch")
    if not rows and not errors:
        raise _invalid("no rows")
    out = await run_in_threadpool(ctx.ingest, address, who, kind, rows, errors, positions)
    request.state.audit = {k: getattr(out, k) for k in ("kind", "rows", "accepted", "quarantined", "duplicates")}
    return out

