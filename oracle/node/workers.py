"""The node's worker processes: a pool (spawned, not forked: polars and web3 hold threads) that
runs each agreement's CPU work of a pass, its inbox ingest and the close of its first due period,
while the main process moves other agreements' reports on."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from oracle.core.terms import Terms
from oracle.node.close import Closed, CloseJob, prepare_close
from oracle.node.errors import WorkerError
from oracle.store import db
from oracle.store.ingest import IngestResult, ingest_folder


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """One agreement's share of a pass for a worker: ingest its inbox, then close a period."""

    key: str
    terms: Terms
    inbox: Path | None
    close: CloseJob | None


@dataclass(slots=True)
class WorkerResult:
    """What a worker did: the ingest's results (or its failure), the close (or its failure)."""

    ingest: list[IngestResult] | Exception = field(default_factory=list)
    period: int | None = None
    closed: Closed | Exception | None = None


class Workers:
    """The pool, started on first use and replaced when a dead worker broke it."""

    def __init__(self, db_url: str, count: int) -> None:
        self.db_url, self.count = db_url, count
        self.pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start (and warm up) the worker processes, if any; a broken pool is replaced."""
        if self.pool is not None and getattr(self.pool, "_broken", False):
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        if self.pool is not None or self.count <= 0:
            return
        self.pool = ProcessPoolExecutor(self.count, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_init, initargs=(self.db_url,))
        for f in [self.pool.submit(_warm, i) for i in range(self.count)]:
            f.result()

    @property
    def running(self) -> bool:
        return self.pool is not None

    def submit(self, job: WorkerJob) -> Future[WorkerResult]:
        assert self.pool is not None
        return self.pool.submit(_job_in_worker, job)

    def pids(self) -> list[int]:
        """The worker processes' ids (none before `start`)."""
        return list(getattr(self.pool, "_processes", None) or {})

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def default_workers(agreements: int) -> int:
    """Worker processes for ingesting and closing periods: $SLACOMP_ORACLE_WORKERS, else one
    per core plus one (each blocks a moment in fsync while writing its bundle) when the node
    serves enough agreements for the start-up cost to pay off (none otherwise)."""
    env = os.environ.get("SLACOMP_ORACLE_WORKERS")
    if env is not None:
        return max(0, int(env))
    cores = os.cpu_count() or 1
    return cores + 1 if cores > 1 and agreements >= 16 else 0


# ------------------------------------------------------------------ in the worker process

_WORKER: dict[str, Engine] = {}


def _worker_init(db_url: str) -> None:
    # inbox files only: a commit need not wait for the disk (see db.connect)
    _WORKER["engine"] = db.connect(db_url, sync_commits=False)
    parent = os.getppid()

    def orphaned() -> None:  # the node was killed (SIGKILL: no shutdown): do not linger
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphaned, name="orphan-watch", daemon=True).start()


def _portable(exc: Exception) -> Exception:
    """`exc` if it survives pickling both ways (an exception that does not would break the
    whole pool when its result is read), else a WorkerError with its class name and text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return WorkerError(type(exc).__name__, str(exc))


def _job_in_worker(job: WorkerJob) -> WorkerResult:
    """A worker's share of one agreement's pass. Failures are returned (and raised in the main
    process where the work would have run)."""
    engine = _WORKER["engine"]
    out = WorkerResult()
    try:
        if job.inbox is not None:
            out.ingest = ingest_folder(engine, job.terms, job.key, job.inbox)
    except Exception as exc:  # noqa: BLE001 - the main process raises it
        out.ingest = _portable(exc)
        return out
    if job.close is not None:
        out.period = job.close.period
        try:
            out.closed = prepare_close(engine, job.close)
        except Exception as exc:  # noqa: BLE001
            out.closed = _portable(exc)
    return out


def _warm(_: int) -> int:
    return os.getpid()
