"""The close step: a period that is due is closed once. Its rows are exported and frozen into an
evidence bundle (`oracle.engine.replay.freeze_period`: written and durable before the report that
names it), the KPI engine runs on the frozen copy, and the report row is stored (state `closed`).
The CPU part (`prepare_close`) may run in a worker process."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.engine import Engine

from oracle.chain.config import Config
from oracle.chain.report import report_from_result
from oracle.core.period import evidence_start, period_at
from oracle.core.terms import parse_terms_bytes
from oracle.engine.replay import freeze_period
from oracle.evidence.bundle import sync_store
from oracle.node.chainview import Served
from oracle.node.errors import EvidenceChanged
from oracle.node.rows import Row, report, reports_of
from oracle.node.states import insert_closed
from oracle.store import db
from oracle.store.db import lock_agreements, reports, sources
from oracle.store.export import export_evidence

log = logging.getLogger("slacomp.oracle.node.loop")


@dataclass(frozen=True, slots=True)
class CloseJob:
    """What closing one period needs (picklable: it travels to a worker process)."""

    key: str
    address: str
    period: int
    label: str
    start: int
    end: int
    terms_bytes: bytes
    store: str
    chain_id: int
    durable: bool = True  # False: the bundle is synced later, with its chunk's (one syncfs)


@dataclass(frozen=True, slots=True)
class Closed:
    """A period's report as computed from its frozen bundle, before it is stored."""

    bundle_id: str
    durable: bool
    sources_seen: int  # the agreement's newest source id when the rows were exported
    exported: str  # digest of the exported files
    start: int  # of the exported window (before the period's start with longer objective windows)
    end: int
    terms_hash: str
    evidence_root: str
    attainments: tuple[tuple[int, ...], ...]
    packed_attainments: str
    digest: str
    total_credit: int


def prepare_close(engine: Engine, job: CloseJob) -> Closed:
    """The CPU part of closing a period: export the period's rows, freeze them into a bundle
    (written and fsynced before the report that names it is stored), run the KPI engine on the
    frozen copy and build the report. The export starts where the longest objective window
    does (a trailing-12-months objective freezes its whole window's rows into the bundle)."""
    start = min(job.start, evidence_start(parse_terms_bytes(job.terms_bytes), job.label))
    with engine.connect() as conn:
        seen = _last_source(conn, job.key)  # before the export: rows stored after it are newer
        files = export_evidence(conn, job.key, start, job.end)
    bundle, result = freeze_period(job.store, job.terms_bytes, files, job.label,
                                   meta={"address": job.address, "chain_id": job.chain_id}, durable=job.durable)
    rep = report_from_result(result, job.period)
    return Closed(bundle_id=bundle.id, durable=job.durable, sources_seen=seen, exported=_files_digest(files),
                  start=start, end=job.end, terms_hash=result.terms_hash, evidence_root=result.evidence_root,
                  attainments=rep.attainments, packed_attainments="0x" + rep.packed_attainments.hex(),
                  digest="0x" + rep.digest(job.chain_id, job.address).hex(), total_credit=result.total_credit)


_Q_LAST_SOURCE = select(func.coalesce(func.max(sources.c.id), 0)).where(sources.c.agreement == bindparam("agreement"))


def _last_source(conn: Any, key: str) -> int:
    """The agreement's newest source id (0: none): rows stored later come from newer sources."""
    return int(db.fetch_tuples(conn, _Q_LAST_SOURCE, {"agreement": key})[0][0])


def _files_digest(files: dict[str, bytes]) -> str:
    """One digest of evidence files (names and contents)."""
    h = hashlib.sha256()
    for name, data in sorted(files.items()):
        h.update(hashlib.sha256(name.encode()).digest() + hashlib.sha256(data).digest())
    return h.hexdigest()


class Closer:
    """Closes periods for the served agreements. `prepared` holds closes already computed (by
    worker processes), by (agreement key, period); each is used once."""

    def __init__(self, engine: Engine, store: Callable[[], Any], chain_id: Callable[[], int],
                 hook: Callable[[str, Row], None], prepared: dict[tuple[str, int], Closed | Exception]) -> None:
        self.engine, self.store, self.chain_id, self.hook, self.prepared = engine, store, chain_id, hook, prepared

    def job(self, a: Served, config: Config, period: int, durable: bool = True) -> CloseJob:
        return CloseJob(a.spec.key, a.address, period, period_at(a.terms, period).label,
                        config.period_bounds[period], config.period_bounds[period + 1], a.terms_bytes,
                        str(self.store()), self.chain_id(), durable)

    def close_many(self, items: list[tuple[Served, Config, int]]) -> list[Row | Exception]:
        """Close a period of each of several agreements (a report already stored is returned as
        it is): the reports are written in one database transaction, then each gets its `closed`
        hook. Each bundle is durable on disk before: fsynced by its writer, or (written by a
        worker) synced with the others by one syncfs."""
        out: list[Row | Exception | None] = []
        values: list[dict[str, Any]] = []
        closes: dict[tuple[str, int], Closed] = {}
        unsynced = False
        rows = reports_of(self.engine, [a.spec.key for a, _, _ in items])
        for a, config, period in items:
            try:
                existing = rows[a.spec.key].get(period)
                if existing is not None:
                    out.append(existing)
                    continue
                ready = self.prepared.pop((a.spec.key, period), None)
                if isinstance(ready, Exception):
                    raise ready
                closed = ready if ready is not None else prepare_close(self.engine, self.job(a, config, period))
                unsynced = unsynced or not closed.durable
                credit = config.credit(closed.attainments)
                if credit != closed.total_credit:
                    log.warning("schedule credit differs from the engine's", extra={"fields": {
                        "agreement": a.address, "period": period, "engine": closed.total_credit,
                        "schedule": credit}})
                stamp = db.now()
                closes[a.spec.key, period] = closed
                values.append({
                    "agreement": a.spec.key, "address": a.address, "period": period,
                    "label": period_at(a.terms, period).label,
                    "bundle_id": closed.bundle_id, "terms_hash": closed.terms_hash,
                    "evidence_root": closed.evidence_root, "attainments": closed.packed_attainments,
                    "digest": closed.digest, "config": "0x" + config.encoded().hex(), "credit": str(credit),
                    "created_at": stamp, "updated_at": stamp})
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - this agreement only
                out.append(exc)
        if values and unsynced:  # the bundles are durable before the reports that name them
            try:
                sync_store(self.store())
            except OSError as exc:
                out, values = [exc if x is None else x for x in out], []
        if values:
            changed = self._store(values, closes)
            for i, ((a, _, period), got) in enumerate(zip(items, out)):
                if got is None and (a.spec.key, period) in changed:
                    out[i] = EvidenceChanged(f"agreement {a.address}: evidence for period {period} changed while it "
                                             "was being closed; it is closed again on the next pass")
        done: list[Row | Exception] = []
        rows = reports_of(self.engine, [a.spec.key for (a, _, _), got in zip(items, out) if got is None])
        for (a, _, period), got in zip(items, out):
            if got is not None:
                done.append(got)
                continue
            row = rows[a.spec.key].get(period)
            assert row is not None
            log.info("period closed", extra={"fields": {"agreement": a.address, "period": period,
                                                         "label": row["label"], "bundle": row["bundle_id"],
                                                         "evidence_root": row["evidence_root"],
                                                         "credit": row["credit"]}})
            self.hook("closed", row)
            done.append(row)
        return done

    def _store(self, values: list[dict[str, Any]], closes: dict[tuple[str, int], Closed]) -> set[tuple[str, int]]:
        """Store the closed reports (one transaction), except those whose evidence changed after
        their bundle's export: rows stored meanwhile would be in neither the bundle nor (the period
        not frozen yet) the quarantine. Returns those (agreement, period): closed again next pass."""
        with self.engine.begin() as conn:
            lock_agreements(conn, [v["agreement"] for v in values])
            insert_closed(conn, values)  # first: SQLite's write lock, held to the commit
            newest: dict[str, int] = dict(conn.execute(select(sources.c.agreement, func.max(sources.c.id)).where(
                sources.c.agreement.in_({v["agreement"] for v in values})).group_by(sources.c.agreement)).all())
            changed = set()
            for v in values:
                c = closes[v["agreement"], v["period"]]
                if (newest.get(v["agreement"]) or 0) > c.sources_seen and _files_digest(
                        export_evidence(conn, v["agreement"], c.start, c.end)) != c.exported:
                    changed.add((v["agreement"], v["period"]))
                    conn.execute(delete(reports).where(
                        reports.c.agreement == v["agreement"], reports.c.period == v["period"],
                        reports.c.bundle_id == v["bundle_id"], reports.c.created_at == v["created_at"]))
        return changed

    def placeholder(self, a: Served, period: int) -> Row:
        """A report row with nothing in it, for a period another submitter settled before this
        node closed it."""
        stamp = db.now()
        with self.engine.begin() as conn:
            insert_closed(conn, [{"agreement": a.spec.key, "address": a.address, "period": period,
                                  "label": period_at(a.terms, period).label, "created_at": stamp, "updated_at": stamp}])
        row = report(self.engine, a.spec.key, period)
        assert row is not None
        return row
