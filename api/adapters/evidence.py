"""The API's adapter to the evidence: the oracle database (connect, ping), telemetry ingest, the
window's evidence exported as the oracle would freeze it, and the evidence bundles of closed periods.
The oracle owns the logic; the API only exposes it."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from oracle.core.terms import Terms
from oracle.evidence.bundle import BundleError, find_bundles, open_bundle
from oracle.evidence.load import Evidence, load_evidence
from oracle.evidence.schema import COLUMNS
from oracle.store import db
from oracle.store.export import export_evidence
from oracle.store.ingest import IngestResult, ingest_rows

from .terms import Registry

__all__ = ["KINDS", "Evidence", "EvidenceStore", "IngestResult", "OperationalError", "columns", "connect", "now",
           "ping"]

# The API's names for the ingest kinds (inventory is the devices file).
KINDS = {"events": "events", "inventory": "devices", "exclusions": "exclusions", "tickets": "tickets"}


def columns(kind: str) -> tuple[str, ...]:
    """The columns of an ingest kind (the first one is required in a CSV header)."""
    return tuple(COLUMNS[KINDS[kind]])


def connect(url: str, *extra: MetaData) -> Engine:
    """The oracle database, with the API's own tables (`extra`) created if missing."""
    engine = db.connect(url)
    for metadata in extra:
        metadata.create_all(engine)
    return engine


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def now() -> int:
    """The oracle's clock (epoch seconds), for the API's audit rows."""
    return db.now()


class EvidenceStore:
    """The database operations the routes need: ingest, telemetry version, evidence, bundles."""

    def __init__(self, engine: Engine, registry: Registry, bundle_store: Path, poll_s: float = 0.5) -> None:
        self.engine, self.registry, self.bundle_store = engine, registry, bundle_store
        self.poll_s = poll_s
        self._versions: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def ingest(self, address: str, terms: Terms, kind: str, rows: list[dict[str, Any]], origin: str) -> IngestResult:
        key = self.registry.key(address)
        try:
            return ingest_rows(self.engine, terms, key, KINDS[kind], rows, origin)
        finally:
            with self._lock:
                self._versions.pop(key, None)  # our own ingest is seen at once

    def version(self, address: str) -> int:
        """Changes whenever telemetry was ingested for the agreement (cache invalidation). Re-read
        at most every `poll_s`: ingest by other processes (the oracle's inbox) shows within that."""
        key, now_ = self.registry.key(address), time.monotonic()
        with self._lock:
            hit = self._versions.get(key)
        if hit is not None and now_ - hit[0] < self.poll_s:
            return hit[1]
        with self.engine.connect() as conn:
            value = int(conn.execute(select(func.coalesce(func.max(db.sources.c.id), 0)).where(
                db.sources.c.agreement == key)).scalar() or 0)
        with self._lock:
            self._versions[key] = (now_, value)
        return value

    def evidence(self, address: str, terms: Terms, start: int, end: int) -> Evidence:
        """The window's evidence as the oracle would freeze it, loaded for the KPI engine."""
        with self.engine.connect() as conn:
            files = export_evidence(conn, self.registry.key(address), start, end)
        return load_evidence(files, terms)

    def bundle(self, address: str, period: int, evidence_root: str | None) -> Path | None:
        """The evidence bundle (its zip file) of a closed period: the oracle's outbox row, else by
        the root the accepted report committed to."""
        with self.engine.connect() as conn:
            bundle_id = conn.execute(select(db.reports.c.bundle_id).where(
                db.reports.c.agreement == self.registry.key(address), db.reports.c.period == period)).scalar()
        if bundle_id:
            try:
                return open_bundle(self.bundle_store, bundle_id).path
            except BundleError:
                pass
        if evidence_root:
            found = find_bundles(self.bundle_store, evidence_root)
            return found[0] if found else None
        return None
