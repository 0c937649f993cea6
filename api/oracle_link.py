"""The one adapter between the API and the oracle node's modules (database, ingest, bundles,
settings): if their interfaces move, only this file changes. The oracle owns the logic; the API
only exposes it."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from oracle.core.period import period_bounds, period_labels
from oracle.core.terms import Terms, load_terms, parse_terms, terms_hash
from oracle.evidence.bundle import BundleError, find_bundles, open_bundle
from oracle.evidence.load import Evidence, load_evidence
from oracle.node.settings import load_settings
from oracle.store import db
from oracle.store.ingest import IngestResult, export_evidence, ingest_rows

from .auth import audit_metadata

# The API's names for the ingest kinds (inventory is the devices file).
KINDS = {"events": "events", "inventory": "devices", "exclusions": "exclusions", "tickets": "tickets"}


class TermsUnknown(LookupError):
    """This service holds no terms file for the agreement (register it first)."""


def connect(url: str) -> Engine:
    engine = db.connect(url)
    audit_metadata.create_all(engine)
    return engine


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@dataclass(frozen=True)
class Known:
    key: str  # the agreement's key in the oracle database
    terms_path: Path | None


class OracleLink:
    """Agreement keys and terms files (from an oracle node's settings and the API's own terms
    store), and the database operations the routes need."""

    def __init__(self, engine: Engine, terms_store: Path, bundle_store: Path, oracle_config: Path | None,
                 poll_s: float = 0.5) -> None:
        self.engine, self.terms_store, self.bundle_store = engine, terms_store, bundle_store
        self.poll_s = poll_s
        self._versions: dict[str, tuple[float, int]] = {}
        self._known: dict[str, Known] = {}
        if oracle_config is not None:
            for spec in load_settings(oracle_config).agreements:
                self._known[spec.address.lower()] = Known(spec.key, spec.terms)
        self._terms: dict[tuple[Path, float], Terms] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ terms

    def key(self, address: str) -> str:
        known = self._known.get(address.lower())
        return known.key if known else address.lower()

    def _terms_path(self, address: str, onchain_hash: str) -> Path:
        known = self._known.get(address.lower())
        if known and known.terms_path:
            return known.terms_path
        return self.terms_store / f"{onchain_hash.lower()}.yaml"

    def terms(self, address: str, onchain_hash: str) -> Terms:
        path = self._terms_path(address, onchain_hash)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            raise TermsUnknown(f"no terms file hashing to {onchain_hash} is registered with this service "
                               f"(PUT /v1/agreements/{address}/terms)") from None
        with self._lock:
            cached = self._terms.get((path, mtime))
        if cached is None:
            cached = load_terms(path)
            with self._lock:
                self._terms[(path, mtime)] = cached
        return cached

    def terms_text(self, address: str, onchain_hash: str) -> str | None:
        path = self._terms_path(address, onchain_hash)
        return path.read_text() if path.exists() else None

    def store_terms(self, text_: str) -> Terms:
        """Validate and keep a terms file under its hash (raises TermsError)."""
        terms = parse_terms(text_)
        self.terms_store.mkdir(parents=True, exist_ok=True)
        path = self.terms_store / f"{terms_hash(terms)}.yaml"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text_)
            tmp.replace(path)
        return terms

    # ------------------------------------------------------------------ ingest

    def frozen_before(self, key: str, terms: Terms) -> int | None:
        """Rows before the end of the last closed period are late (as the oracle node counts them)."""
        with self.engine.connect() as conn:
            last = conn.execute(select(func.max(db.reports.c.period)).where(
                db.reports.c.agreement == key, db.reports.c.bundle_id.is_not(None))).scalar()
        if last is None:
            return None
        return period_bounds(terms, period_labels(terms)[last])[1]

    def ingest(self, address: str, terms: Terms, kind: str, rows: list[dict[str, Any]], origin: str) -> IngestResult:
        key = self.key(address)
        try:
            return ingest_rows(self.engine, terms, key, KINDS[kind], rows, origin, self.frozen_before(key, terms))
        finally:
            with self._lock:
                self._versions.pop(key, None)  # our own ingest is seen at once

    def version(self, address: str) -> int:
        """Changes whenever telemetry was ingested for the agreement (cache invalidation). Re-read
        at most every `poll_s`: ingest by other processes (the oracle's inbox) shows within that."""
        key, now = self.key(address), time.monotonic()
        with self._lock:
            hit = self._versions.get(key)
        if hit is not None and now - hit[0] < self.poll_s:
            return hit[1]
        with self.engine.connect() as conn:
            value = int(conn.execute(select(func.coalesce(func.max(db.sources.c.id), 0)).where(
                db.sources.c.agreement == key)).scalar() or 0)
        with self._lock:
            self._versions[key] = (now, value)
        return value

    def evidence(self, address: str, terms: Terms, start: int, end: int) -> Evidence:
        """The window's evidence as the oracle would freeze it, loaded for the KPI engine."""
        with self.engine.connect() as conn:
            files = export_evidence(conn, self.key(address), start, end)
        return load_evidence(files, terms)

    # ------------------------------------------------------------------ bundles

    def bundle(self, address: str, period: int, evidence_root: str | None) -> Path | None:
        """The evidence bundle (its zip file) of a closed period: the oracle's outbox row, else by
        the root the accepted report committed to."""
        with self.engine.connect() as conn:
            bundle_id = conn.execute(select(db.reports.c.bundle_id).where(
                db.reports.c.agreement == self.key(address), db.reports.c.period == period)).scalar()
        if bundle_id:
            try:
                return open_bundle(self.bundle_store, bundle_id).path
            except BundleError:
                pass
        if evidence_root:
            found = find_bundles(self.bundle_store, evidence_root)
            return found[0] if found else None
        return None
