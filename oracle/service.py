"""The oracle service (`slacomp oracle run`): a loop that ingests new evidence files, closes every
period that is due (period end + grace) for every agreement it serves, signs, collects the other
oracles' signatures, submits through the outbox and confirms. Each step is idempotent and
recorded in the database first, so the loop can be killed at any point and restarted.

Also serves `/metrics` (Prometheus), `/healthz` and `/v1/signatures/<agreement>/<period>`."""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from web3 import Web3
from web3.contract import Contract

from . import db
from .bundle import write_bundle
from .chain import contract
from .db import insert_ignore, quarantine, reports
from .ingest import IngestResult, export_evidence, ingest_file, ingest_folder, ingest_rows
from .keystore import KeyRing, KeystoreError, load_keystore, read_password
from .outbox import CLOSED, FINAL, IN_FLIGHT, SIGNED, Hook, Outbox, TxPolicy
from .peers import add_signature, collected, pull, served
from .report import report_from_result
from .schedule import Config
from .settings import AgreementSpec, Settings
from .signing import pack_signatures
from .terms import Terms, load_terms, period_bounds, period_labels, terms_hash

log = logging.getLogger("slacomp.oracle.service")


class ServiceError(RuntimeError):
    """The node cannot serve an agreement as configured (wrong terms file, no Config on-chain...)."""


# ------------------------------------------------------------------ logging


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                               "logger": record.name, "msg": record.getMessage()}
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("slacomp")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# ------------------------------------------------------------------ metrics


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


# ------------------------------------------------------------------ the node


@dataclass
class _Served:
    spec: AgreementSpec
    terms: Terms
    terms_bytes: bytes
    address: str
    contract: Contract | None = None
    config: Config | None = None


def fetch_config(agreement: Contract, from_block: int = 0) -> Config:
    """The agreement's current Config, rebuilt from its logs (AgreementConfigured, then every
    OracleSetChanged) and checked against the `configHash` in storage."""
    current = bytes(agreement.functions.configHash().call())
    blobs = [bytes(e["args"]["config"]) for e in agreement.events.AgreementConfigured().get_logs(from_block=from_block)]
    blobs += [bytes(e["args"]["config"]) for e in agreement.events.OracleSetChanged().get_logs(from_block=from_block)]
    for blob in reversed(blobs):
        if keccak(blob) == current:
            return Config.decode(blob)
    raise ServiceError(f"agreement {agreement.address}: no Config in its logs hashes to configHash "
                       f"0x{current.hex()} (from_block {from_block})")


class Service:
    """One oracle node. `clock` and `hook(point, report_row)` are injectable (tests: a fixed
    date; a hook that kills the process at 'closed', 'signed', 'sent_persisted', 'broadcast')."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time, hook: Hook | None = None,
                 keyring: KeyRing | None = None, submitter: LocalAccount | None = None,
                 registry: CollectorRegistry | None = None, w3: Web3 | None = None) -> None:
        self.settings, self.clock = settings, clock
        self.hook: Hook = hook or (lambda point, row: None)
        self.engine: Engine = db.connect(settings.db_url)
        # web3 asks eth_chainId before every call and transaction; it never changes, so cache it
        # (and nothing else: block and transaction lookups must see reorgs)
        self.w3 = w3 or Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 30},
                                               cache_allowed_requests=True, cacheable_requests={"eth_chainId"}))
        if keyring is None or submitter is None:
            password = read_password(settings.password_env, settings.password_file) if (
                settings.keystores or settings.submitter_keystore) else ""
            if keyring is None:
                keyring = KeyRing.from_files(settings.keystores, password)
            if submitter is None:
                path = settings.submitter_keystore or (settings.keystores[0] if settings.keystores else None)
                if path is None:
                    raise KeystoreError("no keystore configured for the submitter")
                submitter = load_keystore(path, password)
        self.keyring, self.submitter = keyring, submitter
        self.metrics = Metrics(registry)
        self.outbox = Outbox(self.engine, self.w3, submitter, TxPolicy(
            confirmations=settings.confirmations, replace_after=settings.replace_after,
            fee_bump_pct=settings.fee_bump_pct, priority_fee_wei=settings.priority_fee_wei,
            max_fee_wei=settings.max_fee_wei, from_block=settings.from_block),
            clock=clock, hook=self._hook, count=self.metrics.count)
        self.served: dict[str, _Served] = {}
        for spec in settings.agreements:
            terms = load_terms(spec.terms)
            self.served[spec.key] = _Served(spec, terms, spec.terms.read_bytes(), to_checksum_address(spec.address))
        self._chain_id: int | None = None
        self._http: ThreadingHTTPServer | None = None

    def _hook(self, point: str, row: dict[str, Any]) -> None:
        self.hook(point, row)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # ------------------------------------------------------------------ agreements

    def _agreement(self, key: str) -> _Served:
        try:
            return self.served[key]
        except KeyError:
            for a in self.served.values():
                if key.lower() in (a.address.lower(), a.spec.id.lower()):
                    return a
        raise ServiceError(f"this node does not serve agreement {key!r}")

    def _refresh(self, a: _Served) -> Config:
        """The on-chain Config (re-read when `configHash` changes); the terms must match it."""
        if a.contract is None:
            a.contract = contract(self.w3, "Agreement", a.address)
        current = bytes(a.contract.functions.configHash().call())
        if a.config is None or a.config.hash() != current:
            config = fetch_config(a.contract, self.settings.from_block)
            if "0x" + config.terms_hash.hex() != terms_hash(a.terms):
                raise ServiceError(f"{a.spec.terms} hashes to {terms_hash(a.terms)} but agreement {a.address} "
                                   f"was made for 0x{config.terms_hash.hex()}")
            a.config = config
        return a.config

    def _signing_keys(self, a: _Served, config: Config) -> list[str]:
        wanted = [to_checksum_address(k) for k in a.spec.keys] or self.keyring.addresses
        return [k for k in wanted if k in self.keyring and k in config.oracles]

    # ------------------------------------------------------------------ ingest

    def _frozen_before(self, a: _Served) -> int | None:
        with self.engine.connect() as conn:
            last = conn.execute(select(func.max(reports.c.period)).where(
                reports.c.agreement == a.spec.key, reports.c.bundle_id.is_not(None))).scalar()
        if last is None:
            return None
        return period_bounds_of(a.terms, last)[1]

    def ingest(self, key: str, paths: list[str], kind: str | None = None) -> list[IngestResult]:
        """Ingest files for an agreement (kind from each file's name unless given)."""
        a = self._agreement(key)
        out = [ingest_file(self.engine, a.terms, a.spec.key, p, kind, self._frozen_before(a)) for p in paths]
        for r in out:
            self.metrics.ingest(a.spec.key, r)
        return out

    def ingest_batch(self, key: str, kind: str, rows: list[dict[str, Any]], origin: str = "http") -> IngestResult:
        """The logic behind the API's ingest route."""
        a = self._agreement(key)
        result = ingest_rows(self.engine, a.terms, a.spec.key, kind, rows, origin, self._frozen_before(a))
        self.metrics.ingest(a.spec.key, result)
        return result

    def _ingest_inbox(self, a: _Served) -> None:
        if a.spec.inbox is None:
            return
        for result in ingest_folder(self.engine, a.terms, a.spec.key, a.spec.inbox, self._frozen_before(a)):
            if not result.skipped:
                self.metrics.ingest(a.spec.key, result)
                log.info("ingested", extra={"fields": {"agreement": a.spec.key} | {
                    k: v for k, v in result.to_dict().items() if k != "problems"}})

    # ------------------------------------------------------------------ periods

    def _report(self, a: _Served, period: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(reports).where(
                reports.c.agreement == a.spec.key, reports.c.period == period)).mappings().first()
        return dict(row) if row else None

    def close_period(self, a: _Served, config: Config, period: int) -> dict[str, Any]:
        """Freeze the evidence into a bundle, compute, build the report (state `closed`)."""
        existing = self._report(a, period)
        if existing is not None:
            return existing
        label = period_labels(a.terms)[period]
        start, end = config.period_bounds[period], config.period_bounds[period + 1]
        with self.engine.connect() as conn:
            files = export_evidence(conn, a.spec.key, start, end)
        bundle, result = write_bundle(self.settings.bundle_store(), a.terms_bytes, files, label,
                                      meta={"address": a.address, "chain_id": self.chain_id})
        report = report_from_result(result, period)
        credit = config.credit(report.attainments)
        if credit != result.total_credit:
            log.warning("schedule credit differs from the engine's", extra={"fields": {
                "agreement": a.address, "period": period, "engine": result.total_credit, "schedule": credit}})
        stamp = db.now()
        with self.engine.begin() as conn:
            insert_ignore(conn, reports, [{
                "agreement": a.spec.key, "address": a.address, "period": period, "label": label, "state": CLOSED,
                "bundle_id": bundle.id, "terms_hash": result.terms_hash, "evidence_root": result.evidence_root,
                "attainments": "0x" + report.packed_attainments.hex(),
                "digest": "0x" + report.digest(self.chain_id, a.address).hex(),
                "config": "0x" + config.encoded().hex(), "credit": str(credit),
                "created_at": stamp, "updated_at": stamp}])
        row = self._report(a, period)
        assert row is not None
        log.info("period closed", extra={"fields": {"agreement": a.address, "period": period, "label": label,
                                                     "bundle": bundle.id, "evidence_root": result.evidence_root,
                                                     "credit": credit}})
        self.hook("closed", row)
        return row

    def collect(self, a: _Served, config: Config, row: dict[str, Any]) -> dict[str, Any]:
        """Sign with the local keys, pull the peers' signatures; `signed` once M are in hand."""
        digest = bytes.fromhex(row["digest"][2:])
        have = collected(self.engine, a.address, row["period"], digest, config)
        for address in self._signing_keys(a, config):
            if config.oracle_index(address) not in have:
                add_signature(self.engine, a.address, row["period"], digest,
                              self.keyring.sign_digest(address, digest), config, origin="local")
        have = collected(self.engine, a.address, row["period"], digest, config)
        if len(have) < config.threshold:
            for peer in self.settings.peers:
                pull(self.engine, peer, a.address, row["period"], digest, config)
            have = collected(self.engine, a.address, row["period"], digest, config)
        if len(have) < config.threshold:
            self.outbox.record(row["id"], error=f"{len(have)} of {config.threshold} signatures collected")
            return self._report(a, row["period"]) or row
        chosen = dict(sorted(have.items())[:config.threshold])
        self.outbox.record(row["id"], SIGNED, signatures="0x" + pack_signatures(chosen).hex(),
                         config="0x" + config.encoded().hex(), error=None)
        row = self._report(a, row["period"]) or row
        log.info("report signed", extra={"fields": {"agreement": a.address, "period": row["period"],
                                                     "oracles": sorted(chosen)}})
        self.hook("signed", row)
        return row

    def _due(self, config: Config, period: int) -> bool:
        return config.period_bounds[period + 1] + self.settings.grace <= self.clock()

    def serve_agreement(self, a: _Served, submit: bool = True, close: bool = True) -> None:
        """One pass over an agreement's periods, in order. `submit=False` closes and signs but
        sends nothing; `close=False` only moves reports already signed (or in flight) on."""
        config = self._refresh(a)
        assert a.contract is not None
        next_period = a.contract.functions.nextPeriod().call()
        for period in range(config.period_count):
            row = self._report(a, period)
            if row is not None and row["state"] in FINAL:
                continue
            if row is not None and row["state"] in IN_FLIGHT:
                if not submit or self.outbox.step(row["id"]) not in FINAL:
                    break  # periods settle in order: nothing after an unsettled one can go
                continue
            if period < next_period:  # settled on-chain by another submitter
                if row is None and close and self._due(config, period):
                    row = self.close_period(a, config, period)
                if row is None:
                    row = self._placeholder(a, period)
                self.outbox.mark_settled(row)
                continue
            if not self._due(config, period):
                break
            if not close and (row is None or row["state"] == CLOSED):
                break  # `submit`: only what is already signed goes out
            if row is None:
                row = self.close_period(a, config, period)
            if row["state"] == CLOSED:
                row = self.collect(a, config, row)
            if row["state"] != SIGNED or not submit:
                break
            if self.outbox.step(row["id"]) not in FINAL:
                break
        self._update_lag(a, config)

    def _placeholder(self, a: _Served, period: int) -> dict[str, Any]:
        stamp = db.now()
        with self.engine.begin() as conn:
            insert_ignore(conn, reports, [{"agreement": a.spec.key, "address": a.address, "period": period,
                                           "label": period_labels(a.terms)[period], "state": CLOSED,
                                           "created_at": stamp, "updated_at": stamp}])
        row = self._report(a, period)
        assert row is not None
        return row

    def _update_lag(self, a: _Served, config: Config) -> None:
        now = self.clock()
        lag = 0.0
        for period in range(config.period_count):
            end = config.period_bounds[period + 1]
            if end > now:
                break
            row = self._report(a, period)
            if row is None or row["state"] not in FINAL:
                lag = now - end
                break
        self.metrics.lag.labels(a.spec.key).set(lag)

    # ------------------------------------------------------------------ loop

    def tick(self, submit: bool = True, progress: Callable[[str], None] | None = None) -> None:
        """One loop: for every agreement, ingest, close, sign, submit, confirm. An agreement's
        failure (node down, bad terms) is logged and counted; the others go on. `progress` is
        called with each agreement's key once it is done (the CLI's progress bar)."""
        for a in self.served.values():
            try:
                self._ingest_inbox(a)
                self.serve_agreement(a, submit=submit)
            except Exception as exc:  # noqa: BLE001 - keep serving the others; retried next loop
                kind = type(exc).__name__
                self.metrics.failures.labels(a.spec.key, kind).inc()
                log.error("agreement pass failed", extra={"fields": {
                    "agreement": a.spec.key, "error": f"{kind}: {str(exc)[:300]}"}})
            if progress is not None:
                progress(a.spec.key)
        self.metrics.last_tick.set(self.clock())

    def run(self, stop: threading.Event | None = None) -> None:
        """Loop until SIGTERM/SIGINT (or `stop`): the current pass finishes, then the node exits."""
        stop = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, frame: stop.set())
        self.start_http()
        log.info("oracle started", extra={"fields": {
            "agreements": [a.address for a in self.served.values()], "submitter": self.submitter.address,
            "keys": self.keyring.addresses, "listen": self.settings.listen}})
        try:
            while not stop.is_set():
                self.tick()
                stop.wait(self.settings.poll_interval)
        finally:
            self.close()
            log.info("oracle stopped", extra={"fields": {}})

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.engine.dispose()

    # ------------------------------------------------------------------ HTTP

    def start_http(self) -> str | None:
        """Serve /metrics, /healthz and /v1/signatures in a thread; returns the base URL."""
        if not self.settings.listen:
            return None
        host, _, port = self.settings.listen.rpartition(":")
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                if parts == ["metrics"]:
                    self._send(200, generate_latest(service.metrics.registry), CONTENT_TYPE_LATEST)
                elif parts == ["healthz"]:
                    self._json(200, {"ok": True})
                elif len(parts) == 4 and parts[:2] == ["v1", "signatures"] and parts[3].isdigit():
                    try:
                        address = to_checksum_address(parts[2])
                    except ValueError:
                        self._json(400, {"error": "not an address"})
                        return
                    self._json(200, served(service.engine, address, int(parts[3])))
                else:
                    self._json(404, {"error": "not found"})

            def _json(self, code: int, body: Any) -> None:
                self._send(code, json.dumps(body).encode(), "application/json")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="oracle-http", daemon=True).start()
        return f"http://{host or '127.0.0.1'}:{self._http.server_address[1]}"

    # ------------------------------------------------------------------ status

    def status(self) -> list[dict[str, Any]]:
        """Per agreement: its reports (outbox rows) and open quarantine count."""
        out = []
        with self.engine.connect() as conn:
            for a in self.served.values():
                rows = conn.execute(select(reports).where(reports.c.agreement == a.spec.key).order_by(
                    reports.c.period)).mappings().all()
                open_q = conn.execute(select(func.count()).select_from(quarantine).where(
                    quarantine.c.agreement == a.spec.key, quarantine.c.resolved_at.is_(None))).scalar()
                out.append({"agreement": a.spec.key, "address": a.address, "quarantined": open_q, "reports": [
                    {k: r[k] for k in ("period", "label", "state", "evidence_root", "credit", "tx_hash",
                                       "block_number", "error", "bundle_id")} for r in rows]})
        return out


def period_bounds_of(terms: Terms, period: int) -> tuple[int, int]:
    return period_bounds(terms, period_labels(terms)[period])
