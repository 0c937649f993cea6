"""The oracle service (`slacomp oracle run`): a loop that schedules, for every agreement it
serves, the steps of the data path: intake (new evidence files), close (every period that is due:
period end + grace), sign (M-of-N), send and confirm (the outbox). Each step is idempotent and
recorded in the database first, so the loop can be killed at any point and restarted.

Also serves `/metrics` (Prometheus), `/healthz` and `/v1/signatures/<agreement>/<period>` (`http`)."""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import Enum
from http.server import ThreadingHTTPServer
from typing import Any

from eth_account.signers.local import LocalAccount
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from web3 import Web3

from oracle.chain.config import Config
from oracle.chain.keystore import KeyRing
from oracle.core.addresses import checksum
from oracle.core.terms import load_terms
from oracle.evidence.bundle import CAN_DEFER_SYNC
from oracle.node.chainview import LOGS_GROUP, ChainClock, ChainView, OnChain, Served
from oracle.node.close import Closed, CloseJob, Closer
from oracle.node.errors import ServiceError, WorkerError
from oracle.node.http import start_http
from oracle.node.intake import Intake
from oracle.node.logs import configure_logging
from oracle.node.metrics import Metrics
from oracle.node.outbox import Outbox, TxPolicy
from oracle.node.rows import Row, reports_of, status
from oracle.node.settings import Settings, load_keys
from oracle.node.sign import Signing
from oracle.node.states import FINAL, IN_FLIGHT, ReportState
from oracle.node.tx import Hook
from oracle.node.workers import WorkerJob, WorkerResult, Workers, default_workers
from oracle.store import db
from oracle.store.ingest import IngestResult

__all__ = ["CHUNK", "TAIL_CHUNK", "Pass", "Service", "ServiceError", "configure_logging"]
log = logging.getLogger("slacomp.oracle.node.loop")

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


class Pass(Enum):
    """What one pass over an agreement's periods does."""

    CLOSE = "close"  # close and sign what is due, send nothing (`slacomp oracle close`)
    SEND = "send"  # move on only the reports already signed or in flight (`slacomp oracle submit`)
    PLAN = "plan"  # the loop: stop at the first period to close or report to move, and say which
    PLAN_UNSENT = "plan_unsent"  # the loop's `tick(submit=False)`: the same, sending nothing

    @property
    def sends(self) -> bool:
        return self in (Pass.SEND, Pass.PLAN)

    @property
    def closes(self) -> bool:
        return self is not Pass.SEND

    @property
    def plans(self) -> bool:
        return self in (Pass.PLAN, Pass.PLAN_UNSENT)


@dataclass(frozen=True, slots=True)
class ToClose:
    """A planning pass stopped at a period to close (the loop closes it with its chunk's)."""

    period: int


@dataclass(frozen=True, slots=True)
class ToMove:
    """A planning pass stopped at a report to move on (the loop steps it with its chunk's)."""

    row_id: int


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
        self.clock = clock or (ChainClock(self.w3) if settings.clock == "chain" else time.time)
        self.keyring, self.submitter = load_keys(settings, keyring, submitter)
        self.metrics = Metrics(registry)
        self.outbox = Outbox(self.engine, self.w3, self.submitter, TxPolicy(
            confirmations=settings.confirmations, replace_after=settings.replace_after,
            fee_bump_pct=settings.fee_bump_pct, priority_fee_wei=settings.priority_fee_wei,
            max_fee_wei=settings.max_fee_wei, from_block=settings.from_block),
            clock=self.clock, hook=self._hook, count=self.metrics.count)
        self.served: dict[str, Served] = {}
        for spec in settings.agreements:
            self.served[spec.key] = Served(spec, load_terms(spec.terms), spec.terms.read_bytes(),
                                           checksum(spec.address))
        self.rpc = self.outbox.rpc
        self.chain = ChainView(self.rpc, settings.from_block)
        self.intake = Intake(self.engine, self.metrics)
        self._prepared: dict[tuple[str, int], Closed | Exception] = {}  # closes done by workers
        self.closer = Closer(self.engine, settings.bundle_store, lambda: self.chain_id, self._hook, self._prepared)
        self.signing = Signing(self.engine, self.keyring, settings.peers, self._hook)
        self._jobs: dict[str, Future[WorkerResult]] = {}  # agreement -> its worker job this tick
        self.workers = Workers(settings.db_url, default_workers(len(self.served)) if workers is None else workers)
        self._http: ThreadingHTTPServer | None = None

    def start_workers(self) -> None:
        """Start (and warm up) the worker processes, if this node uses any; `tick` does it on
        first use, `run` at start-up. A pool broken by a dead worker is replaced."""
        self.workers.start()

    def _hook(self, point: str, row: Row) -> None:
        self.hook(point, row)

    @property
    def chain_id(self) -> int:
        return self.outbox.chain_id

    def _agreement(self, key: str) -> Served:
        try:
            return self.served[key]
        except KeyError:
            for a in self.served.values():
                if key.lower() in (a.address.lower(), a.spec.id.lower()):
                    return a
        raise ServiceError(f"this node does not serve agreement {key!r}")

    # ------------------------------------------------------------------ the steps, one at a time

    def ingest(self, key: str, paths: list[str], kind: str | None = None) -> list[IngestResult]:
        """Ingest files for an agreement (kind from each file's name unless given)."""
        return self.intake.files(self._agreement(key), paths, kind)

    def close_period(self, a: Served, config: Config, period: int) -> Row:
        """Freeze the evidence into a bundle, compute, build the report (state `closed`). The
        CPU part (export, bundle, KPI engine) may already be done by a worker process (`tick`
        starts it right after the agreement's inbox is ingested)."""
        out = self.closer.close_many([(a, config, period)])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def _close_job(self, a: Served, config: Config, period: int) -> CloseJob:
        return self.closer.job(a, config, period)

    def serve_agreement(self, a: Served, mode: Pass, snapshot: OnChain | None = None,
                        rows: dict[int, Row] | None = None) -> ToClose | ToMove | None:
        """One pass over an agreement's periods, in order, as `mode` says. A planning pass (the
        loop) does not close a period or move a signed or in-flight report on itself: it stops
        and returns which (`ToClose`, `ToMove`), for the loop to close, sign and move it with the
        other agreements' in batches (and to call this again once that report is final).
        `snapshot` is the agreement's state as read by `ChainView.snapshot`; `rows` its report
        rows by period, if just read."""
        config = self.chain.refresh(a, snapshot.config_hash if snapshot else None)
        next_period = snapshot.next_period if snapshot else self.chain.next_period(a)
        rows = reports_of(self.engine, [a.spec.key])[a.spec.key] if rows is None else rows
        changed = False  # rows still tell the state (for the lag)
        for period in range(config.period_count):
            row = rows.get(period)
            if row is not None and row["state"] in FINAL:
                continue
            if row is not None and row["state"] in IN_FLIGHT:
                if mode is Pass.PLAN:
                    return ToMove(row["id"])
                changed = True
                if not mode.sends or self.outbox.step(row["id"]) not in FINAL:
                    break  # periods settle in order: nothing after an unsettled one can go
                continue
            if period < next_period:  # settled on-chain by another submitter
                changed = True
                if row is None and mode.closes and self._due(config, period):
                    row = self.close_period(a, config, period)
                self.outbox.mark_settled(row if row is not None else self.closer.placeholder(a, period))
                continue
            if not self._due(config, period):
                break
            if not mode.closes and (row is None or row["state"] == ReportState.CLOSED):
                break  # only what is already signed goes out
            if row is None and mode.plans:
                return ToClose(period)
            changed = True
            if row is None:
                row = self.close_period(a, config, period)
            if row["state"] == ReportState.CLOSED:
                row = self.signing.collect(a, config, row)
            if row["state"] != ReportState.SIGNED or not mode.sends:
                break
            if mode.plans:
                return ToMove(row["id"])
            if self.outbox.step(row["id"]) not in FINAL:
                break
        self._update_lag(a, config, None if changed else rows)
        return None

    def _next_due(self, a: Served, period: int) -> bool:
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

    def _update_lag(self, a: Served, config: Config, rows: dict[int, Row] | None = None) -> None:
        try:
            now = self.clock()
        except Exception:  # noqa: BLE001 - the chain's clock, never read yet: the gauge waits
            return
        lag = 0.0
        rows = reports_of(self.engine, [a.spec.key])[a.spec.key] if rows is None else rows
        for period in range(config.period_count):
            end = config.period_bounds[period + 1]
            if end > now:
                break
            row = rows.get(period)
            if row is None or row["state"] not in FINAL:
                lag = now - end
                break
        self.metrics.lag.labels(a.spec.key).set(lag)

    # ------------------------------------------------------------------ the loop

    def _failed(self, a: Served, exc: BaseException) -> None:
        kind = exc.kind if isinstance(exc, WorkerError) else type(exc).__name__
        self.metrics.failures.labels(a.spec.key, kind).inc()
        log.error("agreement pass failed", extra={"fields": {
            "agreement": a.spec.key, "error": f"{kind}: {str(exc)[:300]}"}})

    def tick(self, submit: bool = True, progress: Callable[[str], None] | None = None) -> None:
        """One loop: for every agreement, ingest, close, sign, submit, confirm. An agreement's
        failure (node down, bad terms) is logged and counted; the others go on. `progress` is
        called with each agreement's key once it is done (the CLI's progress bar).

        The chain work is batched across agreements, in rounds: the agreements' on-chain state
        is read in JSON-RPC batches (LOGS_GROUP agreements each), each agreement is served
        (ingest, close, sign) up to the report it has to send or track, then all those reports
        move on together (`Outbox.step_many`); agreements whose report became final get another
        round when their next period is due too."""
        agreements = list(self.served.values())
        self.start_workers()
        first: dict[str, OnChain | Exception] = {}
        pending: list[Served] = []
        try:
            # group by group: the workers start on a group's agreements (their close needs the
            # Config the snapshot loads) while the next group's state is read
            for i in range(0, len(agreements), LOGS_GROUP):
                group = agreements[i:i + LOGS_GROUP]
                try:
                    first.update(self.chain.snapshot(group))
                except Exception as exc:  # noqa: BLE001 - node unreachable: these agreements wait
                    first.update({a.spec.key: exc for a in group})
                known = reports_of(self.engine, [a.spec.key for a in group]) if self.workers.running else {}
                for a in group:
                    try:
                        if not self.workers.running:
                            self.intake.inbox(a)
                        else:
                            self._start_job(a, known[a.spec.key])
                    except Exception as exc:  # noqa: BLE001 - keep serving the others; retried next loop
                        self._failed(a, exc)
                        if progress is not None:
                            progress(a.spec.key)
                        continue
                    pending.append(a)
            self._serve_rounds(pending, first, Pass.PLAN if submit else Pass.PLAN_UNSENT, progress)
        finally:
            for future in self._jobs.values():
                future.cancel()
            self._jobs.clear()
            self._prepared.clear()
        self.metrics.last_tick.set(time.time())

    def _serve_rounds(self, pending: list[Served], first: dict[str, OnChain | Exception] | None,
                      mode: Pass, progress: Callable[[str], None] | None) -> None:
        while pending:
            if first is not None:
                snapshot, first = first, None
            else:
                try:
                    snapshot = self.chain.snapshot(pending)
                except Exception as exc:  # noqa: BLE001 - node unreachable: every agreement waits
                    snapshot = {a.spec.key: exc for a in pending}
            again: list[Served] = []
            carry: dict[int, tuple[Served, int]] = {}
            bounds = _chunks(len(pending))
            for k, (lo, hi) in enumerate(bounds):
                again += self._serve_chunk(pending[lo:hi], snapshot, mode, progress, carry, k == len(bounds) - 1)
            pending = again

    def _serve_chunk(self, chunk: list[Served], snapshot: dict[str, OnChain | Exception], mode: Pass,
                     progress: Callable[[str], None] | None, carry: dict[int, tuple[Served, int]],
                     last: bool) -> list[Served]:
        """Serve a chunk of agreements: each pass up to what it has to close or send; then the
        closes (one transaction), the signatures (one transaction), and the outbox steps of all
        their reports (batched). Returns the agreements whose report became final and whose next
        period is due: they get another round.

        The chunks are pipelined: a chunk other than the `last` does not wait for its
        transactions to be mined. Those still in flight go into `carry` and are looked at again
        with the next chunk's (by then most are mined); the last chunk waits for all of them."""
        finished: list[Served] = []
        try:
            return self._serve_chunk_steps(chunk, snapshot, mode, progress, finished.append, carry, last)
        finally:  # their lag, from one read of their reports, then the progress bar
            fresh = reports_of(self.engine, [a.spec.key for a in finished])
            for a in finished:
                if a.config is not None:
                    self._update_lag(a, a.config, fresh[a.spec.key])
                if progress is not None:
                    progress(a.spec.key)

    def _serve_chunk_steps(self, chunk: list[Served], snapshot: dict[str, OnChain | Exception], mode: Pass,
                           progress: Callable[[str], None] | None, done: Callable[[Served], None],
                           carry: dict[int, tuple[Served, int]], last: bool) -> list[Served]:
        waiting: dict[int, tuple[Served, int]] = {}  # report row id -> its agreement, its period (-1: not known here)
        closing: list[tuple[Served, Config, int]] = []
        # nothing else writes these agreements' reports meanwhile
        rows = reports_of(self.engine, [a.spec.key for a in chunk])
        for a in chunk:
            try:
                self._finish_job(a)
                seen = snapshot[a.spec.key]
                if isinstance(seen, Exception):
                    raise seen
                blocked = self.serve_agreement(a, mode, snapshot=seen, rows=rows[a.spec.key])
            except Exception as exc:  # noqa: BLE001 - keep serving the others; retried next loop
                self._failed(a, exc)
                blocked = None
            if blocked is None:
                if progress is not None:
                    progress(a.spec.key)
            elif isinstance(blocked, ToClose):
                assert a.config is not None
                closing.append((a, a.config, blocked.period))
            else:
                period = next((p for p, r in rows[a.spec.key].items() if r["id"] == blocked.row_id), -1)
                waiting[blocked.row_id] = (a, period)
        if closing:
            closed = self.closer.close_many(closing)
            ok = [(a, config, row) for (a, config, _), row in zip(closing, closed) if not isinstance(row, Exception)]
            for (a, _, _), row in zip(closing, closed):
                if isinstance(row, Exception):
                    self._failed(a, row)
                    done(a)
            for (a, _, _), row in zip(ok, self.signing.collect_many(ok)):
                if isinstance(row, Exception):
                    self._failed(a, row)
                    done(a)
                elif row["state"] == ReportState.SIGNED and mode.sends:
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

    def _start_job(self, a: Served, have: dict[int, Row]) -> None:
        """Hand the agreement's CPU work of this pass to a worker process: ingest its inbox, then
        start closing its first due period without a report (export, bundle, KPI engine), so
        the main process moves other agreements' reports on meanwhile. The close is
        speculative: if the pass does not get to that period, the bundle (content-addressed,
        idempotent) is simply not used."""
        close: CloseJob | None = None
        config = a.config
        if config is not None:
            for period in range(config.period_count):
                if not self._due(config, period):
                    break
                if period not in have:
                    # the bundle is synced with the others of its chunk (`Closer.close_many`), not alone
                    close = self.closer.job(a, config, period, durable=not CAN_DEFER_SYNC)
                    break
        self._jobs[a.spec.key] = self.workers.submit(WorkerJob(
            a.spec.key, a.terms, a.spec.inbox, close))

    def _finish_job(self, a: Served) -> None:
        """Wait for the agreement's worker job: record its ingest (or raise its failure) and
        keep its close for `close_period`."""
        future = self._jobs.pop(a.spec.key, None)
        if future is None:
            return
        done = future.result()
        if isinstance(done.ingest, Exception):
            raise done.ingest
        self.intake.record(a, done.ingest)
        if done.period is not None:
            assert done.closed is not None
            self._prepared[(a.spec.key, done.period)] = done.closed

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
        self.workers.shutdown()
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
        self._http, url = start_http(self.settings.listen, self.metrics.registry, self.engine)
        return url

    # ------------------------------------------------------------------ status

    def status(self) -> list[dict[str, Any]]:
        """Per agreement: its reports (outbox rows) and open quarantine count."""
        return status(self.engine, list(self.served.values()))
