"""Evidence bundles: the frozen inputs of one agreement period, content-addressed on disk.

A bundle is one zip file `<store>/<id>.zip` (members stored uncompressed, with fixed dates and
modes: the same content gives the same bytes) holding `manifest.json` (canonical JSON: schema,
agreement, period label/index/bounds, terms_hash, evidence_root, attainments, total_credit,
sha256 and size of every other member), `terms.yaml` (the terms file as written) and
`evidence/{devices,events,exclusions,tickets}.csv` (canonical CSVs); `unzip` gives the folder.
`id` = sha256 of the manifest bytes. `<store>/roots/<evidence_root>/<id>.zip` (a hard link to
the bundle) indexes bundles by the root a report commits to, so an auditor can re-run
`compute_period` on exactly what the oracle measured. A bundle freezes and checks; it computes
nothing: the measured figures its manifest records come from the caller (oracle.engine.replay).

One file per bundle: creating files is what writing a small bundle costs most (a folder of
six files took several times the KPI engine's time)."""
from __future__ import annotations

import ctypes
import hashlib
import io
import json
import os
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracle.core.period import period_bounds, period_index
from oracle.core.terms import Terms, parse_terms_bytes
from oracle.evidence.load import Evidence, load_evidence

SCHEMA = "slacomp/bundle/v1"
MANIFEST = "manifest.json"
TERMS_FILE = "terms.yaml"
EVIDENCE_DIR = "evidence"
SUFFIX = ".zip"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: member dates carry no information


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

    def read(self, name: str) -> bytes:
        """A member's bytes (e.g. "evidence/events.csv"), as stored: not checked against the
        manifest (`load_bundle` checks every member)."""
        try:
            with zipfile.ZipFile(self.path) as z:
                return z.read(name)
        except KeyError:
            raise BundleError(f"bundle {self.id}: {name} is missing") from None
        except (OSError, zipfile.BadZipFile) as exc:
            raise BundleError(f"bundle {self.id}: {name} cannot be read ({exc})") from None


@dataclass(frozen=True)
class LoadedBundle:
    bundle: Bundle
    terms: Terms
    evidence: Evidence


@dataclass(frozen=True)
class Measured:
    """What the KPI engine measured on a bundle's files, recorded in its manifest."""

    terms_hash: str
    evidence_root: str
    attainments: list[list[int]]  # per objective, per subject, basis points
    total_credit: int


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


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    """The members as a zip, stored (not compressed), with fixed dates and modes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.create_system, info.external_attr = 3, 0o644 << 16  # a Unix file, rw-r--r--
            z.writestr(info, data)
    return buf.getvalue()


def bundle_path(store: str | Path, bundle_id: str) -> Path:
    """Where the bundle `bundle_id` lives in `store`."""
    return Path(store) / f"{bundle_id}{SUFFIX}"


def _sync_close(fds: list[int], durable: bool = True) -> None:
    """fsync (if `durable`) then close."""
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
    store's filesystem (its data and directory entries), in place of two fsyncs per bundle.
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
                 measured: Measured, meta: dict[str, Any] | None = None, durable: bool = True) -> Bundle:
    """Freeze `files` (name -> canonical CSV bytes) with the terms for period `label` and what
    was `measured` on exactly these bytes, under the manifest's content address, durably (the
    file and the store's entry fsynced) before it returns. Idempotent:
    the same inputs give the same id and the existing bundle is kept. `meta` (e.g. agreement
    address, chain id) is recorded in the manifest. `durable=False` leaves the syncing to one
    `sync_store` for many bundles, which must then run before anything names them."""
    store = Path(store)
    terms = parse_terms_bytes(terms_bytes)
    start, end = period_bounds(terms, label)
    members = [(TERMS_FILE, terms_bytes)] + [(f"{EVIDENCE_DIR}/{n}", d) for n, d in sorted(files.items())]
    manifest = {
        "schema": SCHEMA,
        "agreement": terms.agreement,
        "meta": meta or {},
        "period": {"label": label, "index": period_index(terms, label), "start": start, "end": end},
        "terms_hash": measured.terms_hash,
        "evidence_root": measured.evidence_root,
        "attainments": measured.attainments,
        "total_credit": str(measured.total_credit),
        "files": {name: {"sha256": _sha256(data), "size": len(data)} for name, data in sorted(members)},
    }
    body = _canonical(manifest)
    bundle_id = _sha256(body)
    final = bundle_path(store, bundle_id)
    if not final.exists():
        tmp = store / "tmp" / f"{uuid.uuid4().hex}{SUFFIX}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            _sync_close([_create(tmp, _zip([(MANIFEST, body)] + members))], durable)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        if durable:
            _sync_dir(store)
    index = store / "roots" / measured.evidence_root / final.name
    index.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(final, index)
    except FileExistsError:
        pass
    else:
        if durable:
            _sync_dir(index.parent)
    return Bundle(bundle_id, final, manifest)


def import_bundle(store: str | Path, data: bytes) -> Bundle:
    """Keep a bundle received from elsewhere (e.g. downloaded from the vendor's API) in `store`,
    under its manifest's content address and indexed by its evidence root, as `write_bundle`
    would have; its members are checked against the manifest first (BundleError if not)."""
    store = Path(store)
    tmp = store / "tmp" / f"{uuid.uuid4().hex}{SUFFIX}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        _sync_close([_create(tmp, data)])
        loaded = load_bundle(tmp)
        final = bundle_path(store, loaded.bundle.id)
        if not final.exists():
            os.replace(tmp, final)
            _sync_dir(store)
    finally:
        tmp.unlink(missing_ok=True)
    index = store / "roots" / loaded.bundle.evidence_root.lower() / final.name
    index.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(final, index)
    except FileExistsError:
        pass
    return Bundle(loaded.bundle.id, final, loaded.bundle.manifest)


def open_bundle(store: str | Path, bundle_id: str) -> Bundle:
    """The bundle `bundle_id` of `store`, its manifest checked against the id."""
    try:
        return _open(bundle_path(store, bundle_id), bundle_id)
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle_id} not found in {store}") from None


def _open(path: Path, bundle_id: str | None) -> Bundle:
    """A bundle file's manifest; its hash must be `bundle_id` (None: a file under another name,
    e.g. downloaded from the API, is known by its manifest's hash)."""
    try:
        with zipfile.ZipFile(path) as z:
            body = z.read(MANIFEST)
    except FileNotFoundError:
        raise
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise BundleError(f"bundle {bundle_id or path.name}: no readable {MANIFEST} ({exc})") from None
    if bundle_id is not None and _sha256(body) != bundle_id:
        raise BundleError(f"bundle {bundle_id}: manifest hash is {_sha256(body)}")
    return Bundle(bundle_id or _sha256(body), path, json.loads(body))


def load_bundle(path: str | Path) -> LoadedBundle:
    """Open a bundle file (`<id>.zip` in a store, or under any other name), check every member
    against the manifest, and load terms and evidence."""
    path = Path(path)
    stem = path.name.removesuffix(SUFFIX)
    try:
        bundle = _open(path, stem if _is_id(stem) else None)
    except FileNotFoundError:
        raise BundleError(f"bundle file {path} not found") from None
    data: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(path) as z:
            held = set(z.namelist())
            for name, info in bundle.manifest["files"].items():
                if name not in held:
                    raise BundleError(f"bundle {bundle.id}: {name} is missing")
                try:
                    data[name] = z.read(name)
                except zipfile.BadZipFile:  # the zip's own checksum: bytes changed in place
                    raise BundleError(f"bundle {bundle.id}: {name} does not match the manifest "
                                      "(its bytes changed inside the zip)") from None
                if _sha256(data[name]) != info["sha256"]:
                    raise BundleError(f"bundle {bundle.id}: {name} does not match the manifest "
                                      f"(sha256 {_sha256(data[name])})")
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"bundle {bundle.id} cannot be read: {exc}") from None
    if TERMS_FILE not in data:
        raise BundleError(f"bundle {bundle.id}: the manifest lists no {TERMS_FILE}")
    terms = parse_terms_bytes(data[TERMS_FILE])
    prefix = f"{EVIDENCE_DIR}/"
    evidence = {name.removeprefix(prefix): d for name, d in data.items() if name.startswith(prefix)}
    return LoadedBundle(bundle, terms, load_evidence(evidence, terms))


def _is_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def find_bundles(store: str | Path, evidence_root: str | bytes) -> list[Path]:
    root = evidence_root if isinstance(evidence_root, str) else "0x" + evidence_root.hex()
    root = root.lower() if root.startswith("0x") else "0x" + root.lower()
    folder = Path(store) / "roots" / root
    return sorted(Path(store) / p.name for p in folder.iterdir()) if folder.is_dir() else []


def find_bundle(store: str | Path, evidence_root: str | bytes) -> Path:
    """The bundle file whose evidence has this root (the one a report committed to)."""
    found = find_bundles(store, evidence_root)
    if not found:
        raise BundleError(f"no bundle with evidence root {evidence_root!r} in {store}")
    return found[0]
