"""The node's Prometheus metrics (served at `/metrics`)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from oracle.store.ingest import IngestResult


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        a = ["agreement"]
        self.submitted = Counter("slacomp_oracle_reports_submitted", "Report transactions sent", a, registry=r)
        self.confirmed = Counter("slacomp_oracle_reports_confirmed", "Reports confirmed on-chain", a, registry=r)
        self.failures = Counter("slacomp_oracle_failures", "Failures by kind", ["agreement", "kind"], registry=r)
        self.events = Counter("slacomp_oracle_events", "Other outbox events", ["agreement", "event"], registry=r)
        self.ingested = Counter("slacomp_oracle_rows_ingested", "Rows accepted", ["agreement", "kind"], registry=r)
        self.quarantined = Counter("slacomp_oracle_rows_quarantined", "Rows quarantined", a + ["kind"], registry=r)
        self.late = Counter("slacomp_oracle_rows_late", "Rows for already closed periods", ["agreement"], registry=r)
        self.lag = Gauge("slacomp_oracle_settlement_lag_seconds",
                         "Seconds since the end of the oldest ended, unsettled period (0 if none)", a, registry=r)
        self.last_tick = Gauge("slacomp_oracle_last_tick_timestamp_seconds", "End of the last loop", registry=r)

    def count(self, name: str, agreement: str) -> None:
        if name == "reports_sent":
            self.submitted.labels(agreement).inc()
        elif name == "reports_confirmed":
            self.confirmed.labels(agreement).inc()
        elif name == "reports_failed":
            self.failures.labels(agreement, "revert").inc()
        else:
            self.events.labels(agreement, name).inc()

    def ingest(self, agreement: str, result: IngestResult) -> None:
        self.ingested.labels(agreement, result.kind).inc(result.accepted + result.released)
        self.quarantined.labels(agreement, result.kind).inc(result.quarantined)
        self.late.labels(agreement).inc(result.late)

