"""The oracle service (`slacomp oracle run`): a loop that ingests new evidence files, closes every
period that is due (period end + grace) for every agreement it serves, signs, collects the other
oracles' signatures, submits through the outbox and confirms. Each step is idempotent and
recorded in the database first, so the loop can be killed at any point and restarted.

Also serves `/metrics` (Prometheus), `/healthz` and `/v1/signatures/<agreement>/<period>`."""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Engine
from web3 import Web3
from web3.contract import Contract

from oracle.chain.abi import RpcError, decode_event, decode_result, encode_call, event_topic
from oracle.chain.config import Config
from oracle.chain.keystore import KeyRing, KeystoreError, load_keystore, read_password
from oracle.chain.report import report_from_result
from oracle.chain.signing import pack_signatures, recover_signer
from oracle.core.addresses import checksum
from oracle.core.period import period_bounds, period_labels
from oracle.core.terms import Terms, load_terms, terms_hash
from oracle.engine.replay import freeze_period
from oracle.evidence.bundle import CAN_DEFER_SYNC, sync_store
from oracle.node.outbox import CLOSED, FINAL, IN_FLIGHT, SIGNED, Hook, Outbox, TxPolicy
from oracle.node.settings import AgreementSpec, Settings
from oracle.node.signatures import add_signatures, collected, collected_many, pull, served
from oracle.store import db
from oracle.store.db import insert_ignore, lock_agreements, quarantine, reports, signatures, sources
from oracle.store.ingest import IngestResult, export_evidence, frozen_before_in, ingest_file, ingest_folder, ingest_rows

log = logging.getLogger("slacomp.oracle.node.loop")


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
    config_hash: bytes | None = None  # of `config`


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


CHUNK = 50  # agreements whose closes, signatures and transactions are batched together
TAIL_CHUNK = 8  # the smallest chunk the last ones shrink to


def _chunks(n: int) -> list[tuple[int, int]]:
    """[lo, hi) bounds of the chunks of n agreements: CHUNK each, the last 2 * CHUNK in halving
    chunks. The last chunk's chain work (preflight, send, mine, receipts) runs after the
    workers are done, with a core idle: the smaller it is, the sooner the pass ends."""
    out, lo = [], 0
    while lo < n:
        rest = n - lo
        size = CHUNK if rest > 2 * CHUNK else rest // 2 if rest > 2 * TAIL_CHUNK else rest
        out.append((lo, lo + size))
        lo += size
    return out
LOGS_GROUP = 200  # agreements whose Config logs are fetched by one eth_getLogs


class ChainClock:
    """The chain's time: the latest block's timestamp, read at most once a second and moved on
    by this machine's monotonic clock in between (a node without new blocks keeps time). When
    the node cannot be reached, the last reading goes on being moved on."""

    def __init__(self, w3: Web3, max_age: float = 1.0) -> None:
        self.w3, self.max_age = w3, max_age
        self._read: tuple[float, float] | None = None  # (block timestamp, monotonic time read)

    def __call__(self) -> float:
        now = time.monotonic()
        if self._read is None or now - self._read[1] >= self.max_age:
            try:
                self._read = (float(self.w3.eth.get_block("latest")["timestamp"]), now)
            except Exception:  # noqa: BLE001 - unreachable: keep the last reading, if any
                if self._read is None:
                    raise
        return self._read[0] + (now - self._read[1])


class Service:
    """One oracle node. `clock` and `hook(point, report_row)` are injectable (tests: a fixed
    date; a hook that kills the process at 'closed', 'signed', 'sent_persisted', 'broadcast');
    by default the clock is the one `settings.clock` names."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] | None = None, hook: Hook | None = None,
                 keyring: KeyRing | None = None, submitter: LocalAccount | None = None,
                 registry: CollectorRegistry | None = None, w3: Web3 | None = None,
                 workers: int | None = None) -> None:
        self.settings = settings
        self.hook: Hook = hook or (lambda point, row: None)
        self.engine: Engine = db.connect(settings.db_url)
        # web3 asks eth_chainId before every call and transaction; it never changes, so cache it
        # (and nothing else: block and transaction lookups must see reorgs)
        self.w3 = w3 or Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 30},
                                               cache_allowed_requests=True, cacheable_requests={"eth_chainId"}))
        if clock is None:
            clock = ChainClock(self.w3) if settings.clock == "chain" else time.time
        self.clock = clock
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
            self.served[spec.key] = _Served(spec, terms, spec.terms.read_bytes(), checksum(spec.address))
        self.rpc = self.outbox.rpc
        self._prepared: dict[tuple[str, int], dict[str, Any] | Exception] = {}  # closes done by workers
        self._jobs: dict[str, Future[dict[str, Any]]] = {}  # agreement -> its worker job this tick
        self._pool: ProcessPoolExecutor | None = None
        self.workers = default_workers(len(self.served)) if workers is None else workers
        self._http: ThreadingHTTPServer | None = None

    def start_workers(self) -> None:
        """Start (and warm up) the worker processes, if this node uses any; `tick` does it on
        first use, `run` at start-up. Spawned, not forked: polars and web3 hold threads. A pool
        broken by a dead worker is replaced."""
        if self._pool is not None and getattr(self._pool, "_broken", False):
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._pool is not None or self.workers <= 0:
            return
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_worker_init, initargs=(self.settings.db_url,))
        for f in [self._pool.submit(_warm, i) for i in range(self.workers)]:
            f.result()

    def _hook(self, point: str, row: dict[str, Any]) -> None:
        self.hook(point, row)

    @property
    def chain_id(self) -> int:
        return self.outbox.chain_id

    # ------------------------------------------------------------------ agreements

    def _agreement(self, key: str) -> _Served:
        try:
            return self.served[key]
        except KeyError:
            for a in self.served.values():
                if key.lower() in (a.address.lower(), a.spec.id.lower()):
                    return a
        raise ServiceError(f"this node does not serve agreement {key!r}")

    def _refresh(self, a: _Served, current: bytes | None = None) -> Config:
        """The on-chain Config (re-read when `configHash` changes); the terms must match it.
        `current` is the configHash already read (by `_snapshot`)."""
        if current is None:
            got = self._snapshot([a])[a.spec.key]
            if isinstance(got, Exception):
                raise got
            current = got[0]
        if a.config is None or a.config_hash != current:
            failed = self._load_configs([(a, current)])
            if failed:
                raise failed[a.spec.key]
        assert a.config is not None
        return a.config

    def _snapshot(self, agreements: list[_Served]) -> dict[str, tuple[bytes, int] | Exception]:
        """(configHash, nextPeriod) of each agreement, read in one JSON-RPC batch; each agreement
        whose Config is not known yet (or changed) has it loaded from its logs, also batched. An
        agreement that cannot be read gets its exception instead; a node that cannot be reached
        raises."""
        calls: list[tuple[str, list[Any]]] = []
        for a in agreements:
            calls += [("eth_call", [{"to": a.address, "data": encode_call("Agreement", "configHash")}, "latest"]),
                      ("eth_call", [{"to": a.address, "data": encode_call("Agreement", "nextPeriod")}, "latest"])]
        answers = self.rpc.batch(calls)
        out: dict[str, tuple[bytes, int] | Exception] = {}
        stale: list[tuple[_Served, bytes]] = []
        for k, a in enumerate(agreements):
            config_hash, next_period = answers[2 * k:2 * k + 2]
            bad = next((x for x in (config_hash, next_period) if isinstance(x, RpcError)), None)
            if bad is not None:
                out[a.spec.key] = bad
                continue
            try:
                current = bytes(decode_result("Agreement", "configHash", config_hash))
                out[a.spec.key] = (current, int(decode_result("Agreement", "nextPeriod", next_period)))
            except Exception as exc:  # noqa: BLE001 - e.g. no contract at that address
                out[a.spec.key] = ServiceError(f"agreement {a.address}: cannot read its state ({exc})")
                continue
            if a.config is None or a.config_hash != current:
                stale.append((a, current))
        for key, exc in self._load_configs(stale).items():
            out[key] = exc
        return out

    def _load_configs(self, stale: list[tuple[_Served, bytes]]) -> dict[str, Exception]:
        """Rebuild each agreement's Config from its logs (AgreementConfigured, then every
        OracleSetChanged; one batch) and check it against `configHash` and the terms file."""
        if not stale:
            return {}
        topics = [[event_topic("Agreement", "AgreementConfigured"), event_topic("Agreement", "OracleSetChanged")]]
        # one eth_getLogs per group of agreements (the node scans the blocks once per query)
        groups = [stale[i:i + LOGS_GROUP] for i in range(0, len(stale), LOGS_GROUP)]
        answers = self.rpc.batch([("eth_getLogs", [{
            "address": [a.address for a, _ in group], "fromBlock": hex(self.settings.from_block),
            "toBlock": "latest", "topics": topics}]) for group in groups])
        by_address: dict[str, list[dict[str, Any]] | Exception] = {}
        for group, answer in zip(groups, answers):
            for a, _ in group:
                by_address[a.address.lower()] = answer if isinstance(answer, Exception) else []
            if not isinstance(answer, Exception):
                for lg in answer:
                    found = by_address.get(str(lg["address"]).lower())
                    if isinstance(found, list):
                        found.append(lg)
        failed: dict[str, Exception] = {}
        for a, current in stale:
            try:
                logs = by_address[a.address.lower()]
                if isinstance(logs, Exception):
                    raise logs
                blobs = [bytes(decode_event("Agreement", "AgreementConfigured" if lg["topics"][0] == topics[0][0]
                                            else "OracleSetChanged", lg)["config"]) for lg in logs]
                blob = next((b for b in reversed(blobs) if keccak(b) == current), None)
                if blob is None:
                    raise ServiceError(f"agreement {a.address}: no Config in its logs hashes to configHash "
                                       f"0x{current.hex()} (from_block {self.settings.from_block})")
                config = Config.decode(blob)
                if "0x" + config.terms_hash.hex() != terms_hash(a.terms):
                    raise ServiceError(f"{a.spec.terms} hashes to {terms_hash(a.terms)} but agreement {a.address} "
                                       f"was made for 0x{config.terms_hash.hex()}")
            except Exception as exc:  # noqa: BLE001 - this agreement only
                failed[a.spec.key] = exc
                continue
            a.config, a.config_hash = config, current
        return failed

    def _signing_keys(self, a: _Served, config: Config) -> list[str]:
        wanted = [checksum(k) for k in a.spec.keys] or self.keyring.addresses
        return [k for k in wanted if k in self.keyring and k in config.oracles]

    # ------------------------------------------------------------------ ingest

    def _frozen_before(self, a: _Served, rows: dict[int, dict[str, Any]] | None = None) -> int | None:
        """The end of the agreement's last period frozen into a bundle (its report rows by
        period, if already read)."""
        if rows is None:
            with self.engine.connect() as conn:
                return frozen_before_in(conn, a.terms, a.spec.key)
        last = max((p for p, r in rows.items() if r["bundle_id"] is not None), default=None)
        return None if last is None else period_bounds_of(a.terms, last)[1]

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
        self._ingested(a, ingest_folder(self.engine, a.terms, a.spec.key, a.spec.inbox, self._frozen_before(a)))

    def _ingested(self, a: _Served, results: list[IngestResult]) -> None:
        for result in results:
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
        """Freeze the evidence into a bundle, compute, build the report (state `closed`). The
        CPU part (export, bundle, KPI engine) may already be done by a worker process (`tick`
        starts it right after the agreement's inbox is ingested)."""
        out = self._close_many([(a, config, period)])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def _close_many(self, items: list[tuple[_Served, Config, int]]) -> list[dict[str, Any] | Exception]:
        """`close_period` for several agreements: the reports are written in one database
        transaction, then each gets its `closed` hook. Each bundle is durable on disk before:
        fsynced by its writer, or (written by a worker) synced with the others by one syncfs."""
        out: list[dict[str, Any] | Exception | None] = []
        values: list[dict[str, Any]] = []
        closes: dict[tuple[str, int], dict[str, Any]] = {}
        unsynced = False
        rows = self._reports_of([a for a, _, _ in items])
        for a, config, period in items:
            try:
                existing = rows[a.spec.key].get(period)
                if existing is not None:
                    out.append(existing)
                    continue
                ready = self._prepared.pop((a.spec.key, period), None)
                if isinstance(ready, Exception):
                    raise ready
                closed = ready if ready is not None else prepare_close(self.engine, self._close_job(a, config, period))
                unsynced = unsynced or not closed["durable"]
                credit = config.credit(closed["attainments"])
                if credit != closed["total_credit"]:
                    log.warning("schedule credit differs from the engine's", extra={"fields": {
                        "agreement": a.address, "period": period, "engine": closed["total_credit"],
                        "schedule": credit}})
                stamp = db.now()
                closes[a.spec.key, period] = closed
                values.append({
                    "agreement": a.spec.key, "address": a.address, "period": period,
                    "label": period_labels(a.terms)[period], "state": CLOSED,
                    "bundle_id": closed["bundle_id"], "terms_hash": closed["terms_hash"],
                    "evidence_root": closed["evidence_root"], "attainments": closed["packed_attainments"],
                    "digest": closed["digest"], "config": "0x" + config.encoded().hex(), "credit": str(credit),
                    "created_at": stamp, "updated_at": stamp})
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - this agreement only
                out.append(exc)
        if values and unsynced:  # the bundles are durable before the reports that name them
            try:
                sync_store(self.settings.bundle_store())
            except OSError as exc:
                out, values = [exc if x is None else x for x in out], []
        if values:
            changed = self._store_reports(values, closes)
            for i, ((a, _, period), got) in enumerate(zip(items, out)):
                if got is None and (a.spec.key, period) in changed:
                    out[i] = EvidenceChanged(f"agreement {a.address}: evidence for period {period} changed while it "
                                             "was being closed; it is closed again on the next pass")
        done: list[dict[str, Any] | Exception] = []
        rows = self._reports_of([a for (a, _, _), got in zip(items, out) if got is None])
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

    def _store_reports(self, values: list[dict[str, Any]],
                       closes: dict[tuple[str, int], dict[str, Any]]) -> set[tuple[str, int]]:
        """Store the closed reports (one transaction), except those whose evidence changed after
        their bundle's export: rows stored meanwhile would be in neither the bundle nor (the period
        not frozen yet) the quarantine. Returns those (agreement, period): closed again next pass."""
        with self.engine.begin() as conn:
            lock_agreements(conn, [v["agreement"] for v in values])
            insert_ignore(conn, reports, values)  # first: SQLite's write lock, held to the commit
            newest = dict(conn.execute(select(sources.c.agreement, func.max(sources.c.id)).where(
                sources.c.agreement.in_({v["agreement"] for v in values})).group_by(sources.c.agreement)).all())
            changed = set()
            for v in values:
                c = closes[v["agreement"], v["period"]]
                if (newest.get(v["agreement"]) or 0) > c["sources_seen"] and _files_digest(
                        export_evidence(conn, v["agreement"], c["start"], c["end"])) != c["exported"]:
                    changed.add((v["agreement"], v["period"]))
                    conn.execute(delete(reports).where(
                        reports.c.agreement == v["agreement"], reports.c.period == v["period"],
                        reports.c.bundle_id == v["bundle_id"], reports.c.created_at == v["created_at"]))
        return changed

    def _close_job(self, a: _Served, config: Config, period: int) -> dict[str, Any]:
        return {"key": a.spec.key, "address": a.address, "period": period, "label": period_labels(a.terms)[period],
                "start": config.period_bounds[period], "end": config.period_bounds[period + 1],
                "terms_bytes": a.terms_bytes, "store": str(self.settings.bundle_store()), "chain_id": self.chain_id}

    def _start_job(self, a: _Served, have: dict[int, dict[str, Any]]) -> None:
        """Hand the agreement's CPU work of this pass to a worker process: ingest its inbox, then
        start closing its first due period without a report (export, bundle, KPI engine), so
        the main process moves other agreements' reports on meanwhile. The close is
        speculative: if the pass does not get to that period, the bundle (content-addressed,
        idempotent) is simply not used."""
        assert self._pool is not None
        job: dict[str, Any] = {"key": a.spec.key, "terms": a.terms, "inbox": a.spec.inbox,
                               "frozen_before": self._frozen_before(a, have), "close": None}
        config = a.config
        if config is not None:
            for period in range(config.period_count):
                if not self._due(config, period):
                    break
                if period not in have:
                    # the bundle is synced with the others of its chunk (`_close_many`), not alone
                    job["close"] = self._close_job(a, config, period) | {"durable": not CAN_DEFER_SYNC}
                    break
        self._jobs[a.spec.key] = self._pool.submit(_job_in_worker, job)

    def _finish_job(self, a: _Served) -> None:
        """Wait for the agreement's worker job: record its ingest (or raise its failure) and
        keep its close for `close_period`."""
        future = self._jobs.pop(a.spec.key, None)
        if future is None:
            return
        done = future.result()
        if isinstance(done["ingest"], Exception):
            raise done["ingest"]
        self._ingested(a, done["ingest"])
        if done["period"] is not None:
            self._prepared[(a.spec.key, done["period"])] = done["closed"]

    def collect(self, a: _Served, config: Config, row: dict[str, Any]) -> dict[str, Any]:
        """Sign with the local keys, pull the peers' signatures; `signed` once M are in hand."""
        digest = bytes.fromhex(row["digest"][2:])
        have = collected(self.engine, a.address, row["period"], digest, config)
        mine = [self.keyring.sign_digest(address, digest) for address in self._signing_keys(a, config)
                if config.oracle_index(address) not in have]
        if mine:  # one database transaction for all local signatures
            add_signatures(self.engine, a.address, row["period"], digest, mine, config, origin="local")
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
        return self._signed(a, self._report(a, row["period"]) or row, chosen)

    def _signed(self, a: _Served, row: dict[str, Any], chosen: dict[int, bytes]) -> dict[str, Any]:
        """`row` (as stored, signed) is logged and passed to the `signed` hook."""
        log.info("report signed", extra={"fields": {"agreement": a.address, "period": row["period"],
                                                     "oracles": sorted(chosen)}})
        self.hook("signed", row)
        return row

    def _collect_many(self, items: list[tuple[_Served, Config, dict[str, Any]]]) -> list[dict[str, Any] | Exception]:
        """`collect` for several closed reports: where the local keys (with signatures already
        held) reach the threshold, the signatures and the `signed` states of all are written in
        one database transaction; the others take `collect` (peers)."""
        out: list[dict[str, Any] | Exception | None] = []
        fast: list[tuple[int, list[dict[str, Any]], dict[int, bytes]]] = []
        held = iter(collected_many(self.engine, [(a.address, row["period"], bytes.fromhex(row["digest"][2:]), config)
                                                 for a, config, row in items if row["state"] == CLOSED]))
        for k, (a, config, row) in enumerate(items):
            try:
                if row["state"] != CLOSED:
                    out.append(row)
                    continue
                digest = bytes.fromhex(row["digest"][2:])
                have = next(held)
                new: list[dict[str, Any]] = []
                for address in self._signing_keys(a, config):
                    index = config.oracle_index(address)
                    if index in have:
                        continue
                    sig = self.keyring.sign_digest(address, digest)
                    if recover_signer(digest, sig) != address:
                        continue
                    have[index] = sig
                    new.append({"address": a.address, "period": row["period"], "digest": row["digest"],
                                "oracle": address, "signature": "0x" + sig.hex(), "origin": "local",
                                "created_at": db.now()})
                if len(have) < config.threshold:
                    out.append(self.collect(a, config, row))
                    continue
                fast.append((k, new, dict(sorted(have.items())[:config.threshold])))
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - this agreement only
                out.append(exc)
        if fast:
            stamp = db.now()
            with self.engine.begin() as conn:
                insert_ignore(conn, signatures, [r for _, new, _ in fast for r in new])
                conn.execute(update(reports).where(reports.c.id == bindparam("row_id")).values(
                    state=SIGNED, signatures=bindparam("sigs"), config=bindparam("cfg"), error=None,
                    updated_at=stamp), [{"row_id": items[k][2]["id"], "sigs": "0x" + pack_signatures(chosen).hex(),
                                         "cfg": "0x" + items[k][1].encoded().hex()} for k, _, chosen in fast])
            fresh = self._reports_of([items[k][0] for k, _, _ in fast])
            for k, _, chosen in fast:
                a, _, row = items[k]
                out[k] = self._signed(a, fresh[a.spec.key].get(row["period"]) or row, chosen)
        return [x for x in out if x is not None]  # type: ignore[misc]

    def _next_due(self, a: _Served, period: int) -> bool:
        """Whether the period after `period` is due (or the clock cannot tell, or `period` is
        -1, not known: look again)."""
        config = a.config
        if period < 0:
            return True
        if config is None or period + 1 >= config.period_count:
            return False
        try:
            return self._due(config, period + 1)
        except Exception:  # noqa: BLE001
            return True

    def _due(self, config: Config, period: int) -> bool:
        return config.period_bounds[period + 1] + self.settings.grace <= self.clock()

    def _reports(self, a: _Served) -> dict[int, dict[str, Any]]:
        """The agreement's outbox rows by period (one query)."""
        return self._reports_of([a])[a.spec.key]

    def _reports_of(self, agreements: list[_Served]) -> dict[str, dict[int, dict[str, Any]]]:
        """Each agreement's outbox rows by period (one query per 500 agreements)."""
        out: dict[str, dict[int, dict[str, Any]]] = {a.spec.key: {} for a in agreements}
        keys = list(out)
        with self.engine.connect() as conn:
            for i in range(0, len(keys), 500):
                for r in conn.execute(select(reports).where(reports.c.agreement.in_(keys[i:i + 500]))).mappings():
                    out[r["agreement"]][r["period"]] = dict(r)
        return out

    def serve_agreement(self, a: _Served, submit: bool = True, close: bool = True, defer: bool = False,
                        snapshot: tuple[bytes, int] | None = None,
                        rows: dict[int, dict[str, Any]] | None = None) -> tuple[str, int] | None:
        """One pass over an agreement's periods, in order. `submit=False` closes and signs but
        sends nothing; `close=False` only moves reports already signed (or in flight) on.
        `defer=True` (the loop): instead of closing a period or moving a signed or in-flight
        report on itself, the pass ends and returns ("close", period) or ("row", row id), for
        the loop to close, sign and move it with the other agreements' reports in batches (and to
        call this again once that report is final).
        `snapshot` is (configHash, nextPeriod) as read by `_snapshot`; `rows` the agreement's
        report rows by period, if just read."""
        config = self._refresh(a, snapshot[0] if snapshot else None)
        if snapshot:
            next_period = snapshot[1]
        else:
            call = {"to": a.address, "data": encode_call("Agreement", "nextPeriod")}
            next_period = int(decode_result("Agreement", "nextPeriod", self.rpc.call("eth_call", [call, "latest"])))
        rows = self._reports(a) if rows is None else rows
        blocked: tuple[str, int] | None = None
        changed = False  # rows still tell the state (for the lag)
        for period in range(config.period_count):
            row = rows.get(period)
            if row is not None and row["state"] in FINAL:
                continue
            if row is not None and row["state"] in IN_FLIGHT:
                if submit and defer:
                    blocked = ("row", row["id"])
                    break
                changed = True
                if not submit or self.outbox.step(row["id"]) not in FINAL:
                    break  # periods settle in order: nothing after an unsettled one can go
                continue
            if period < next_period:  # settled on-chain by another submitter
                changed = True
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
            if row is None and defer:
                blocked = ("close", period)
                break
            changed = True
            if row is None:
                row = self.close_period(a, config, period)
            if row["state"] == CLOSED:
                row = self.collect(a, config, row)
            if row["state"] != SIGNED or not submit:
                break
            if defer:
                blocked = ("row", row["id"])
                break
            if self.outbox.step(row["id"]) not in FINAL:
                break
        if blocked is None:
            self._update_lag(a, config, None if changed else rows)
        return blocked

    def _placeholder(self, a: _Served, period: int) -> dict[str, Any]:
        stamp = db.now()
        with self.engine.begin() as conn:
            insert_ignore(conn, reports, [{"agreement": a.spec.key, "address": a.address, "period": period,
                                           "label": period_labels(a.terms)[period], "state": CLOSED,
                                           "created_at": stamp, "updated_at": stamp}])
        row = self._report(a, period)
        assert row is not None
        return row

    def _update_lag(self, a: _Served, config: Config, rows: dict[int, dict[str, Any]] | None = None) -> None:
        try:
            now = self.clock()
        except Exception:  # noqa: BLE001 - the chain's clock, never read yet: the gauge waits
            return
        lag = 0.0
        rows = self._reports(a) if rows is None else rows
        for period in range(config.period_count):
            end = config.period_bounds[period + 1]
            if end > now:
                break
            row = rows.get(period)
            if row is None or row["state"] not in FINAL:
                lag = now - end
                break
        self.metrics.lag.labels(a.spec.key).set(lag)

    # ------------------------------------------------------------------ loop

    def _failed(self, a: _Served, exc: BaseException) -> None:
        kind = exc.kind if isinstance(exc, WorkerError) else type(exc).__name__
        self.metrics.failures.labels(a.spec.key, kind).inc()
        log.error("agreement pass failed", extra={"fields": {
            "agreement": a.spec.key, "error": f"{kind}: {str(exc)[:300]}"}})

    def tick(self, submit: bool = True, progress: Callable[[str], None] | None = None) -> None:
        """One loop: for every agreement, ingest, close, sign, submit, confirm. An agreement's
        failure (node down, bad terms) is logged and counted; the others go on. `progress` is
        called with each agreement's key once it is done (the CLI's progress bar).

        The chain work is batched across agreements, in rounds: the agreements' on-chain state
        is read in JSON-RPC batches (LOGS_GROUP agreements each), each agreement is served (ingest, close, sign) up to the
        report it has to send or track, then all those reports move on together
        (`Outbox.step_many`); agreements whose report became final get another round when their
        next period is due too."""
        agreements = list(self.served.values())
        self.start_workers()
        first: dict[str, tuple[bytes, int] | Exception] = {}
        pending: list[_Served] = []
        try:
            # group by group: the workers start on a group's agreements (their close needs the
            # Config the snapshot loads) while the next group's state is read
            for i in range(0, len(agreements), LOGS_GROUP):
                group = agreements[i:i + LOGS_GROUP]
                try:
                    first.update(self._snapshot(group))
                except Exception as exc:  # noqa: BLE001 - node unreachable: these agreements wait
                    first.update({a.spec.key: exc for a in group})
                known = self._reports_of(group) if self._pool is not None else {}
                for a in group:
                    try:
                        if self._pool is None:
                            self._ingest_inbox(a)
                        else:
                            self._start_job(a, known[a.spec.key])
                    except Exception as exc:  # noqa: BLE001 - keep serving the others; retried next loop
                        self._failed(a, exc)
                        if progress is not None:
                            progress(a.spec.key)
                        continue
                    pending.append(a)
            self._serve_rounds(pending, first, submit, progress)
        finally:
            for future in self._jobs.values():
                future.cancel()
            self._jobs.clear()
            self._prepared.clear()
        self.metrics.last_tick.set(time.time())

    def _serve_rounds(self, pending: list[_Served], first: dict[str, tuple[bytes, int] | Exception] | None,
                      submit: bool, progress: Callable[[str], None] | None) -> None:
        while pending:
            if first is not None:
                snapshot, first = first, None
            else:
                try:
                    snapshot = self._snapshot(pending)
                except Exception as exc:  # noqa: BLE001 - node unreachable: every agreement waits
                    snapshot = {a.spec.key: exc for a in pending}
            again: list[_Served] = []
            carry: dict[int, tuple[_Served, int]] = {}
            bounds = _chunks(len(pending))
            for k, (lo, hi) in enumerate(bounds):
                again += self._serve_chunk(pending[lo:hi], snapshot, submit, progress, carry, k == len(bounds) - 1)
            pending = again

    def _serve_chunk(self, chunk: list[_Served], snapshot: dict[str, tuple[bytes, int] | Exception], submit: bool,
                     progress: Callable[[str], None] | None, carry: dict[int, tuple[_Served, int]],
                     last: bool) -> list[_Served]:
        """Serve a chunk of agreements: each pass up to what it has to close or send; then the
        closes (one transaction), the signatures (one transaction), and the outbox steps of all
        their reports (batched). Returns the agreements whose report became final and whose next
        period is due: they get another round.

        The chunks are pipelined: a chunk other than the `last` does not wait for its
        transactions to be mined. Those still in flight go into `carry` and are looked at again
        with the next chunk's (by then most are mined); the last chunk waits for all of them."""
        finished: list[_Served] = []
        try:
            return self._serve_chunk_steps(chunk, snapshot, submit, progress, finished.append, carry, last)
        finally:  # their lag, from one read of their reports, then the progress bar
            fresh = self._reports_of(finished)
            for a in finished:
                if a.config is not None:
                    self._update_lag(a, a.config, fresh[a.spec.key])
                if progress is not None:
                    progress(a.spec.key)

    def _serve_chunk_steps(self, chunk: list[_Served], snapshot: dict[str, tuple[bytes, int] | Exception],
                           submit: bool, progress: Callable[[str], None] | None,
                           done: Callable[[_Served], None], carry: dict[int, tuple[_Served, int]],
                           last: bool) -> list[_Served]:
        waiting: dict[int, tuple[_Served, int]] = {}  # report row id -> its agreement, its period (-1: not known here)
        closing: list[tuple[_Served, Config, int]] = []
        rows = self._reports_of(chunk)  # nothing else writes these agreements' reports meanwhile
        for a in chunk:
            try:
                self._finish_job(a)
                state = snapshot[a.spec.key]
                if isinstance(state, Exception):
                    raise state
                blocked = self.serve_agreement(a, submit=submit, defer=True, snapshot=state, rows=rows[a.spec.key])
            except Exception as exc:  # noqa: BLE001 - keep serving the others; retried next loop
                self._failed(a, exc)
                blocked = None
            if blocked is None:
                if progress is not None:
                    progress(a.spec.key)
            elif blocked[0] == "close":
                assert a.config is not None
                closing.append((a, a.config, blocked[1]))
            else:
                waiting[blocked[1]] = (a, next((p for p, r in rows[a.spec.key].items() if r["id"] == blocked[1]), -1))
        if closing:
            closed = self._close_many(closing)
            ok = [(a, config, row) for (a, config, _), row in zip(closing, closed) if not isinstance(row, Exception)]
            for (a, _, _), row in zip(closing, closed):
                if isinstance(row, Exception):
                    self._failed(a, row)
                    done(a)
            for (a, _, _), row in zip(ok, self._collect_many(ok)):
                if isinstance(row, Exception):
                    self._failed(a, row)
                    done(a)
                elif row["state"] == SIGNED and submit:
                    waiting[row["id"]] = (a, row["period"])
                else:
                    done(a)
        waiting |= carry  # earlier chunks' reports, in flight when last looked at
        carry.clear()
        if not waiting:
            return []
        try:
            states: dict[int, str | Exception] = self.outbox.step_many(list(waiting), wait=last)
        except Exception as exc:  # noqa: BLE001
            states = {row_id: exc for row_id in waiting}
        again = []
        for row_id, (a, period) in waiting.items():
            state = states.get(row_id)
            if state in FINAL and self._next_due(a, period):
                again.append(a)  # another round for it: its next period is due too
                continue
            if not last and state in IN_FLIGHT:
                carry[row_id] = (a, period)
                continue
            if isinstance(state, Exception):
                self._failed(a, state)
            done(a)
        return again

    def run(self, stop: threading.Event | None = None) -> None:
        """Loop until SIGTERM/SIGINT (or `stop`): the current pass finishes, then the node exits."""
        stop = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, frame: stop.set())
        self.start_http()
        self.start_workers()
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
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
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
                        address = checksum(parts[2])
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


# ------------------------------------------------------------------ closing periods (also in worker processes)

_WORKER: dict[str, Engine] = {}


def prepare_close(engine: Engine, job: dict[str, Any]) -> dict[str, Any]:
    """The CPU part of closing a period: export the period's rows, freeze them into a bundle
    (written and fsynced before the report that names it is stored), run the KPI engine on the
    frozen copy and build the report. Returns the report's fields."""
    with engine.connect() as conn:
        seen = _last_source(conn, job["key"])  # before the export: rows stored after it are newer
        files = export_evidence(conn, job["key"], job["start"], job["end"])
    bundle, result = freeze_period(job["store"], job["terms_bytes"], files, job["label"],
                                   meta={"address": job["address"], "chain_id": job["chain_id"]},
                                   durable=job.get("durable", True))
    report = report_from_result(result, job["period"])
    return {"bundle_id": bundle.id, "durable": job.get("durable", True), "sources_seen": seen,
            "exported": _files_digest(files), "start": job["start"], "end": job["end"],
            "terms_hash": result.terms_hash, "evidence_root": result.evidence_root,
            "attainments": report.attainments, "packed_attainments": "0x" + report.packed_attainments.hex(),
            "digest": "0x" + report.digest(job["chain_id"], job["address"]).hex(),
            "total_credit": result.total_credit}


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


def _worker_init(db_url: str) -> None:
    # inbox files only: a commit need not wait for the disk (see db.connect)
    _WORKER["engine"] = db.connect(db_url, sync_commits=False)
    parent = os.getppid()

    def orphaned() -> None:  # the node was killed (SIGKILL: no shutdown): do not linger
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphaned, name="orphan-watch", daemon=True).start()


class EvidenceChanged(ServiceError):
    """Rows for a period arrived while it was being closed: it is closed again on the next pass."""


class WorkerError(RuntimeError):
    """An exception raised in a worker process that could not travel back as itself."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message

    def __reduce__(self) -> tuple[Any, ...]:
        return (WorkerError, (self.kind, self.message))


def _portable(exc: Exception) -> Exception:
    """`exc` if it survives pickling both ways (an exception that does not would break the
    whole pool when its result is read), else a WorkerError with its class name and text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return WorkerError(type(exc).__name__, str(exc))


def _job_in_worker(job: dict[str, Any]) -> dict[str, Any]:
    """A worker's share of one agreement's pass: ingest the inbox, then close a period. Failures
    are returned (and raised in the main process where the work would have run)."""
    engine = _WORKER["engine"]
    out: dict[str, Any] = {"ingest": [], "period": None, "closed": None}
    try:
        if job["inbox"] is not None:
            out["ingest"] = ingest_folder(engine, job["terms"], job["key"], job["inbox"], job["frozen_before"])
    except Exception as exc:  # noqa: BLE001 - the main process raises it
        out["ingest"] = _portable(exc)
        return out
    if job["close"] is not None:
        out["period"] = job["close"]["period"]
        try:
            out["closed"] = prepare_close(engine, job["close"])
        except Exception as exc:  # noqa: BLE001
            out["closed"] = _portable(exc)
    return out


def _warm(_: int) -> int:
    return os.getpid()


def default_workers(agreements: int) -> int:
    """Worker processes for ingesting and closing periods: $SLACOMP_ORACLE_WORKERS, else one
    per core plus one (each blocks a moment in fsync while writing its bundle) when the node
    serves enough agreements for the start-up cost to pay off (none otherwise)."""
    env = os.environ.get("SLACOMP_ORACLE_WORKERS")
    if env is not None:
        return max(0, int(env))
    cores = os.cpu_count() or 1
    return cores + 1 if cores > 1 and agreements >= 16 else 0
