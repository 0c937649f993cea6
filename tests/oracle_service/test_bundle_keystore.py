"""Evidence bundles (content-addressed, re-computable by an auditor) and encrypted keystores."""
from __future__ import annotations

import pytest
from eth_account import Account

from oracle import db
from oracle.bundle import BundleError, find_bundle, load_bundle, write_bundle
from tests.e2e.helpers import EXAMPLE, rewrite_bundle
from oracle.evidence import load_evidence
from oracle.ingest import export_evidence, ingest_folder
from oracle.keystore import KeyRing, KeystoreError, create_keystore, load_keystore, read_password
from oracle.kpi import compute_period
from oracle.report import make_report
from oracle.signing import sign_report
from oracle.terms import load_terms, period_bounds

TERMS_PATH = EXAMPLE / "terms.yaml"
TERMS = load_terms(TERMS_PATH)


def _bundle(tmp_path, store):
    engine = db.connect(f"sqlite:///{tmp_path / 'o.db'}")
    ingest_folder(engine, TERMS, "acme", EXAMPLE / "evidence")
    start, end = period_bounds(TERMS, "2026-10")
    with engine.connect() as conn:
        files = export_evidence(conn, "acme", start, end)
    engine.dispose()
    return write_bundle(store, TERMS_PATH.read_bytes(), files, "2026-10", meta={"address": "0xabc"})


def test_bundle_reproduces_the_engine_on_the_original_files(tmp_path):
    store = tmp_path / "bundles"
    bundle, result = _bundle(tmp_path, store)
    direct = compute_period(TERMS, load_evidence(EXAMPLE / "evidence", TERMS), "2026-10")
    assert result.evidence_root == direct.evidence_root
    assert result.attainments() == direct.attainments() and result.total_credit == direct.total_credit
    # an auditor finds it by the root the report committed to and recomputes the same numbers
    loaded = load_bundle(find_bundle(store, direct.evidence_root))
    again = loaded.recompute()
    assert (again.evidence_root, again.attainments()) == (direct.evidence_root, direct.attainments())
    assert loaded.bundle.manifest["terms_hash"] == direct.terms_hash
    # content-addressed: the same inputs give the same bundle
    assert _bundle(tmp_path / "again", store)[0].id == bundle.id


def test_tampered_bundle_is_refused(tmp_path):
    store = tmp_path / "bundles"
    bundle, _ = _bundle(tmp_path, store)
    rewrite_bundle(bundle.path, {"evidence/events.csv": lambda b: b.replace(b"faulted", b"available")})
    with pytest.raises(BundleError, match="events.csv does not match the manifest"):
        load_bundle(bundle.path)


def test_bundle_is_one_zip_an_auditor_can_unpack(tmp_path):
    """One file per bundle, the same bytes for the same content; unpacked it is the folder of
    terms, canonical CSVs and manifest; bytes changed in place (zip checksum wrong) are refused."""
    import zipfile

    store = tmp_path / "bundles"
    bundle, _ = _bundle(tmp_path, store)
    assert bundle.path == store / f"{bundle.id}.zip" and bundle.path.is_file()
    assert sorted(p.name for p in store.iterdir()) == sorted([bundle.path.name, "roots", "tmp"])
    first = bundle.path.read_bytes()
    bundle.path.unlink()
    assert _bundle(tmp_path / "again", store)[0].path.read_bytes() == first
    with zipfile.ZipFile(bundle.path) as z:
        z.extractall(tmp_path / "unpacked")
    assert sorted(str(p.relative_to(tmp_path / "unpacked")) for p in (tmp_path / "unpacked").rglob("*.*")) == [
        "evidence/devices.csv", "evidence/events.csv", "evidence/exclusions.csv", "evidence/tickets.csv",
        "manifest.json", "terms.yaml"]
    direct = compute_period(TERMS, load_evidence(tmp_path / "unpacked" / "evidence", TERMS), "2026-10")
    assert direct.evidence_root == bundle.evidence_root
    # downloaded under another name, it is still checked and known by its manifest's hash
    renamed = tmp_path / "download.zip"
    renamed.write_bytes(first)
    assert load_bundle(renamed).bundle.id == bundle.id
    data = bytearray(first)
    at = data.index(b",faulted")
    data[at:at + 8] = b",offline"  # same length: only the zip's checksum can tell
    renamed.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="events.csv does not match the manifest"):
        load_bundle(renamed)


def test_keystore_roundtrip_and_errors_never_show_the_key(tmp_path):
    key = bytes(range(1, 33))
    path = tmp_path / "o.json"
    address = create_keystore(path, key, "pw", kdf="pbkdf2", iterations=16)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_keystore(path, "pw").address == address == Account.from_key(key).address
    with pytest.raises(KeystoreError) as exc:
        load_keystore(path, "wrong")
    assert key.hex() not in str(exc.value)
    ring = KeyRing.from_files([path], "pw")
    assert key.hex() not in repr(ring) and address in repr(ring)
    report = make_report(0, b"\x01" * 32, b"\x02" * 32, [[9000]])
    digest = report.digest(31337, "0x" + "11" * 20)
    assert ring.sign_digest(address, digest) == sign_report(report, 31337, "0x" + "11" * 20, key)
    (tmp_path / "pwfile").write_text("secret\n")
    assert read_password("NOPE_NOT_SET", tmp_path / "pwfile") == "secret"
    with pytest.raises(KeystoreError, match="no keystore password"):
        read_password("SLACOMP_TEST_UNSET_VARIABLE")
