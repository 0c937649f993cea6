"""Evidence bundles: the frozen inputs of one agreement period, content-addressed on disk.

A bundle is a folder `<store>/<id>/` holding `terms.yaml` (the terms file as written),
`evidence/{devices,events,exclusions,tickets}.csv` (canonical CSVs) and `manifest.json`
(canonical JSON: schema, agreement, period label/index/bounds, terms_hash, evidence_root,
attainments, total_credit, sha256 and size of every file). `id` = sha256 of the manifest bytes.
`<store>/roots/<evidence_root>/<id>` indexes bundles by the root a report commits to, so an
auditor can re-run `compute_period` on exactly what the oracle measured."""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evidence import Evidence, load_evidence
from .kpi import PeriodResult, compute_period
from .terms import Terms, load_terms, parse_terms_bytes, period_bounds, period_index

SCHEMA = "slacomp/bundle/v1"
MANIFEST = "manifest.json"
TERMS_FILE = "terms.yaml"
EVIDENCE_DIR = "evidence"


class BundleError(ValueError):
    """A bundle is missing, or its files do not match its manifest."""


@dataclass(frozen=True)
class Bundle:
    id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def evidence_root(self) -> str:
        return str(self.manifest["evidence_root"])

    @property
    def label(self) -> str:
        return str(self.manifest["period"]["label"])


@dataclass(frozen=True)
class LoadedBundle:
    bundle: Bundle
    terms: Terms
    evidence: Evidence

    def recompute(self) -> PeriodResult:
        """The KPI engine's result on the bundle: what an auditor checks against the report."""
        return compute_period(self.terms, self.evidence, self.bundle.label)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _create(path: Path, data: bytes) -> int:
    """Write a new file; returns its open descriptor (for `_sync_close`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sync_close(fds: list[int], durable: bool = True) -> None:
    """fsync (if `durable`) then close: every file's data is written before the first fsync
    returns, so one journal commit carries them all (one fsync per file as they are written
    costs twice the time)."""
    try:
        for fd in fds if durable else ():
            os.fsync(fd)
    finally:
        for fd in fds:
            os.close(fd)


def _syncfs() -> Any:
    """libc's syncfs(2) (Linux), or None where there is none."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


_SYNCFS = _syncfs()
CAN_DEFER_SYNC = _SYNCFS is not None


def sync_store(store: str | Path) -> None:
    """Make every bundle written to `store` without `durable` durable: one syncfs(2) of the
    store's filesystem (its data and directory entries), in place of seven fsyncs per bundle.
    Only where CAN_DEFER_SYNC (Linux)."""
    if _SYNCFS is None:
        raise OSError("syncfs is not available here: write bundles with durable=True")
    fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {store}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bundle(store: str | Path, terms_bytes: bytes, files: dict[str, bytes], label: str,
                 meta: dict[str, Any] | None = None, durable: bool = True) -> tuple[Bundle, PeriodResult]:
    """Freeze `files` (name -> canonical CSV bytes) with the terms for period `label`, compute the
    period from the frozen copy, and store it under its content address, durably (files and the
    folder's entry fsynced) before it returns. Idempotent: the same inputs give the same id and
    the existing bundle is kept. `meta` (e.g. agreement address, chain id) is recorded in the
    manifest. `durable=False` leaves the syncing to one `sync_store` for many bundles, which
    must then run before anything names them."""
    store = Path(store)
    tmp = store / "tmp" / uuid.uuid4().hex
    fds: list[int] = []
    try:
        (tmp / EVIDENCE_DIR).mkdir(parents=True)
        fds.append(_create(tmp / TERMS_FILE, terms_bytes))
        for name, data in sorted(files.items()):
            fds.append(_create(tmp / EVIDENCE_DIR / name, data))
        terms = parse_terms_bytes(terms_bytes)
        result = compute_period(terms, load_evidence(tmp / EVIDENCE_DIR, terms), label)
        start, end = period_bounds(terms, label)
        manifest = {
            "schema": SCHEMA,
            "agreement": terms.agreement,
            "meta": meta or {},
            "period": {"label": label, "index": period_index(terms, label), "start": start, "end": end},
            "terms_hash": result.terms_hash,
            "evidence_root": result.evidence_root,
            "attainments": [[r.attainment_bps for r in o.results] for o in result.objectives],
            "total_credit": str(result.total_credit),
            "files": {name: {"sha256": _sha256(data), "size": len(data)} for name, data in
                      sorted([(TERMS_FILE, terms_bytes)] + [(f"{EVIDENCE_DIR}/{n}", d) for n, d in files.items()])},
        }
        body = _canonical(manifest)
        bundle_id = _sha256(body)
        fds.append(_create(tmp / MANIFEST, body))
        fds, opened = [], fds
        _sync_close(opened, durable)
        final = store / bundle_id
        if final.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
            if durable:
                _sync_dir(store)
        index = store / "roots" / result.evidence_root / bundle_id
        index.parent.mkdir(parents=True, exist_ok=True)
        index.touch()
        return Bundle(bundle_id, final, manifest), result
    finally:
        for fd in fds:
            os.close(fd)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def open_bundle(store: str | Path, bundle_id: str) -> Bundle:
    path = Path(store) / bundle_id
    try:
        body = (path / MANIFEST).read_bytes()
    except OSError:
        raise BundleError(f"bundle {bundle_id} not found in {store}") from None
    if _sha256(body) != bundle_id:
        raise BundleError(f"bundle {bundle_id}: manifest hash is {_sha256(body)}")
    return Bundle(bundle_id, path, json.loads(body))


def load_bundle(path: str | Path) -> LoadedBundle:
    """Open a bundle folder, check every file against the manifest, and load terms and evidence."""
    path = Path(path)
    bundle = open_bundle(path.parent, path.name)
    for name, info in bundle.manifest["files"].items():
        try:
            data = (path / name).read_bytes()
        except OSError:
            raise BundleError(f"bundle {bundle.id}: {name} is missing") from None
        if _sha256(data) != info["sha256"]:
            raise BundleError(f"bundle {bundle.id}: {name} does not match the manifest (sha256 {_sha256(data)})")
    terms = load_terms(path / TERMS_FILE)
    return LoadedBundle(bundle, terms, load_evidence(path / EVIDENCE_DIR, terms))


def find_bundles(store: str | Path, evidence_root: str | bytes) -> list[Path]:
    root = evidence_root if isinstance(evidence_root, str) else "0x" + evidence_root.hex()
    root = root.lower() if root.startswith("0x") else "0x" + root.lower()
    folder = Path(store) / "roots" / root
    return sorted(Path(store) / p.name for p in folder.iterdir()) if folder.is_dir() else []


def find_bundle(store: str | Path, evidence_root: str | bytes) -> Path:
    """The bundle folder whose evidence has this root (the one a report committed to)."""
    found = find_bundles(store, evidence_root)
    if not found:
        raise BundleError(f"no bundle with evidence root {evidence_root!r} in {store}")
    return found[0]
