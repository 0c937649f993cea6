"""The intake step: evidence files (the inbox, or files named on the command line) ingested into the
database for an agreement this node serves. Rows for a period already frozen into a bundle go to
the quarantine as late (`oracle.store.ingest`)."""
from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from oracle.node.chainview import Served
from oracle.node.metrics import Metrics
from oracle.store.ingest import IngestResult, ingest_file, ingest_folder

log = logging.getLogger("slacomp.oracle.node.loop")


class Intake:
    """Ingests for the served agreements and counts what came in."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine, self.metrics = engine, metrics

    def files(self, a: Served, paths: list[str], kind: str | None = None) -> list[IngestResult]:
        """Ingest files (kind from each file's name unless given)."""
        out = [ingest_file(self.engine, a.terms, a.spec.key, p, kind) for p in paths]
        for r in out:
            self.metrics.ingest(a.spec.key, r)
        return out

    def inbox(self, a: Served) -> None:
        """Ingest the agreement's inbox folder, if it has one (new files only)."""
        if a.spec.inbox is not None:
            self.record(a, ingest_folder(self.engine, a.terms, a.spec.key, a.spec.inbox))

    def record(self, a: Served, results: list[IngestResult]) -> None:
        """Count and log what an ingest (here or in a worker process) took in."""
        for result in results:
            if not result.skipped:
                self.metrics.ingest(a.spec.key, result)
                log.info("ingested", extra={"fields": {"agreement": a.spec.key} | {
                    k: v for k, v in result.to_dict().items() if k != "problems"}})
