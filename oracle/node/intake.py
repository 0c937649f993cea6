"""The intake step: evidence files (the inbox, or files named on the command line) ingested into the
database for an agreement this node serves. Rows for a period already frozen into a bundle go to
the quarantine as late (`oracle.store.ingest`)."""
from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from oracle.core.period import period_at
from oracle.node.chainview import Served
from oracle.node.metrics import Metrics
from oracle.node.rows import Row
from oracle.store.ingest import IngestResult, frozen_before_in, ingest_file, ingest_folder

log = logging.getLogger("slacomp.oracle.node.loop")


class Intake:
    """Ingests for the served agreements and counts what came in."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine, self.metrics = engine, metrics

    def frozen_before(self, a: Served, rows: dict[int, Row] | None = None) -> int | None:
        """The end of the agreement's last period frozen into a bundle (from its report rows by
        period, if already read; else one query)."""
        if rows is None:
            with self.engine.connect() as conn:
                return frozen_before_in(conn, a.terms, a.spec.key)
        last = max((p for p, r in rows.items() if r["bundle_id"] is not None), default=None)
        return None if last is None else period_at(a.terms, last).end

    def files(self, a: Served, paths: list[str], kind: str | None = None) -> list[IngestResult]:
        """Ingest files (kind from each file's name unless given)."""
        out = [ingest_file(self.engine, a.terms, a.spec.key, p, kind, self.frozen_before(a)) for p in paths]
        for r in out:
            self.metrics.ingest(a.spec.key, r)
        return out

    def inbox(self, a: Served) -> None:
        """Ingest the agreement's inbox folder, if it has one (new files only)."""
        if a.spec.inbox is not None:
            self.record(a, ingest_folder(self.engine, a.terms, a.spec.key, a.spec.inbox, self.frozen_before(a)))

    def record(self, a: Served, results: list[IngestResult]) -> None:
        """Count and log what an ingest (here or in a worker process) took in."""
        for result in results:
            if not result.skipped:
                self.metrics.ingest(a.spec.key, result)
                log.info("ingested", extra={"fields": {"agreement": a.spec.key} | {
                    k: v for k, v in result.to_dict().items() if k != "problems"}})
