"""The report rows (`reports`) as the node reads them: by agreement and period."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from oracle.store.db import quarantine, reports

if TYPE_CHECKING:
    from oracle.node.chainview import Served



class Row(TypedDict):
    """A `reports` row as read (also what the hooks get): a plain dict, typed, so the bulk reads
    of every pass cost nothing more than the mapping they come from."""

    id: int
    agreement: str
    address: str
    period: int
    label: str
    state: str  # a ReportState value
    bundle_id: str | None
    terms_hash: str | None
    evidence_root: str | None
    attainments: str | None  # packed, hex
    digest: str | None
    config: str | None  # packed Config the report was signed under, hex
    credit: str | None
    signatures: str | None  # packed, hex
    tx_hash: str | None
    block_number: int | None
    error: str | None
    created_at: int
    updated_at: int


class Attempt(TypedDict):
    """A `tx_attempts` row: one signed transaction, stored before it is broadcast."""

    id: NotRequired[int]  # given by the database
    report_id: int | None  # None for nonce-gap fillers
    sender: str
    nonce: int
    gas: int
    tx_hash: str
    raw: str
    max_fee: str
    priority_fee: str
    status: str  # pending | mined | reverted | replaced | dropped
    sent_at: int
    block_number: NotRequired[int | None]
    error: NotRequired[str | None]


def as_row(mapping: Any) -> Row:
    """A database mapping as a Row (no copy beyond the dict)."""
    return cast(Row, dict(mapping))


def reports_of(engine: Engine, keys: Iterable[str]) -> dict[str, dict[int, Row]]:
    """Each agreement's report rows by period (one query per 500 agreements)."""
    out: dict[str, dict[int, Row]] = {key: {} for key in keys}
    wanted = list(out)
    with engine.connect() as conn:
        for i in range(0, len(wanted), 500):
            for r in conn.execute(select(reports).where(reports.c.agreement.in_(wanted[i:i + 500]))).mappings():
                out[r["agreement"]][r["period"]] = as_row(r)
    return out


def report(engine: Engine, key: str, period: int) -> Row | None:
    """One agreement's report row for one period, if stored."""
    with engine.connect() as conn:
        row = conn.execute(select(reports).where(
            reports.c.agreement == key, reports.c.period == period)).mappings().first()
    return as_row(row) if row else None


def status(engine: Engine, served: list[Served]) -> list[dict[str, Any]]:
    """Per agreement: its reports (outbox rows) and open quarantine count."""
    out = []
    with engine.connect() as conn:
        for a in served:
            rows = conn.execute(select(reports).where(reports.c.agreement == a.spec.key).order_by(
                reports.c.period)).mappings().all()
            open_q = conn.execute(select(func.count()).select_from(quarantine).where(
                quarantine.c.agreement == a.spec.key, quarantine.c.resolved_at.is_(None))).scalar()
            out.append({"agreement": a.spec.key, "address": a.address, "quarantined": open_q, "reports": [
                {k: r[k] for k in ("period", "label", "state", "evidence_root", "credit", "tx_hash",
                                   "block_number", "error", "bundle_id")} for r in rows]})
    return out
