"""Evidence bundles (content-addressed, re-computable by an auditor) and encrypted keystores."""
from __future__ import annotations

import pytest
from eth_account import Account

from oracle.chain.keystore import KeyRing, KeystoreError, create_keystore, load_keystore, read_password
from oracle.chain.report import make_report
from oracle.chain.signing import sign_report
from oracle.core.period import period_bounds
from oracle.core.terms import load_terms
from oracle.engine.kpi import compute_period
from oracle.engine.replay import freeze_period, recompute
from oracle.evidence.bundle import BundleError, find_bundle, load_bundle
from oracle.evidence.load import load_evidence
from oracle.store import db
from oracle.store.export import export_evidence
from oracle.store.ingest import ingest_folder
from tests.e2e.helpers import EXAMPLE, rewrite_bundle

TERMS_PATH = EXAMPLE / "terms.yaml"
TERMS = load_terms(TERMS_PATH)


def _bundle(tmp_path, store):
    engine = db.connect(f"sqlite:///{tmp_path / 'o.db'}")
    ingest_folder(engine, TERMS, "acme", EXAMPLE / "evidence")
    start, end = period_bounds(TERMS, "2026-10")
    with engine.connect() as conn:
        files = export_evidence(conn, "acme", start, end)
    engine.dispose()
    return freeze_period(store, TERMS_PATH.read_bytes(), files, "2026-10", meta={"address": "0xabc"})


def test_bundle_reproduces_the_engine_on_the_original_files(tmp_path):
    store = tmp_path / "bundles"
    bundle, result = _bundle(tmp_path, store)
    direct = compute_period(TERMS, load_evidence(EXAMPLE / "evidence", TERMS), "2026-10")
    assert result.evidence_root == direct.evidence_root
    assert result.attainments() == direct.attainments() and result.total_credit == direct.total_credit
    # an auditor finds it by the root the report committed to and recomputes the same numbers
    loaded = load_bundle(find_bundle(store, direct.evidence_root))
    again = recompute(loaded)
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


def test_direct_signer_gives_eth_account_bytes_and_recovery_refuses_bad_signatures():
    """The node signs through libsecp256k1 directly (transactions, report digests) and recovers
    signers the same way: byte for byte what eth-account gives, on random keys and transactions;
    high-s, bad v, zero r and truncated signatures recover to nothing."""
    import os
    import random

    from oracle.chain.signing import SECP256K1_N, Signer, recover_signer, sign_digest

    rng = random.Random(7)
    for i in range(60):
        key = rng.randbytes(32)
        account, signer = Account.from_key(key), Signer(key)
        assert signer.address == account.address
        digest = rng.randbytes(32)
        sig = signer.sign_digest(digest)
        reference = account.unsafe_sign_hash(digest)  # eth-account's signature, as bytes
        assert sig == sign_digest(digest, key) == (reference.r.to_bytes(32, "big") + reference.s.to_bytes(32, "big")
                                                   + bytes([reference.v]))
        assert recover_signer(digest, sig) == account.address
        tx = {"type": 2, "chainId": rng.choice([1, 31337, 2**40]), "nonce": rng.choice([0, 127, 128, 2**20]),
              "gas": rng.randrange(21_000, 10**7), "maxFeePerGas": rng.choice([0, 10**9, 2**200]),
              "maxPriorityFeePerGas": rng.choice([0, 1, 10**9]), "to": Account.from_key(rng.randbytes(32)).address,
              "value": rng.choice([0, 10**18]), "data": rng.randbytes(rng.choice([0, 1, 55, 56, 700]))}
        signed = account.sign_transaction(tx)
        raw, tx_hash = signer.sign_eip1559(tx["chainId"], tx["nonce"], tx["gas"], tx["maxFeePerGas"],
                                           tx["maxPriorityFeePerGas"], tx["to"], tx["value"], tx["data"])
        assert (raw, tx_hash) == (bytes(signed.raw_transaction), bytes(signed.hash)), i
    r, s = sig[:32], int.from_bytes(sig[32:64], "big")
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])  # the same point, other s
    assert Account._recover_hash(digest, signature=high_s) == account.address  # valid, but not canonical
    for bad in (high_s, sig[:64] + b"\x01", sig[:64] + b"\x1d", bytes(32) + sig[32:], sig[:64], os.urandom(3)):
        assert recover_signer(digest, bad) is None
    with pytest.raises(TypeError):
        __import__("pickle").dumps(signer)


def test_report_digest_words_are_the_abi_encoding():
    """Report.struct_hash and domain_separator lay the static ABI words out themselves: the
    same bytes as eth_abi's encoder, for random reports, chains and agreements."""
    import random

    from eth_abi import encode
    from eth_utils import keccak

    from oracle.chain.report import DOMAIN_NAME, DOMAIN_TYPEHASH, DOMAIN_VERSION, REPORT_TYPEHASH, domain_separator

    rng = random.Random(5)
    for _ in range(50):
        report = make_report(rng.choice([0, 1, 11, 2**32 - 1]), rng.randbytes(32), rng.randbytes(32),
                             [[rng.randrange(10_001) for _ in range(rng.randrange(1, 6))] for _ in range(3)],
                             revision=rng.choice([0, 1, 2**32 - 1]))
        chain_id, agreement = rng.choice([1, 31337, 2**64]), Account.from_key(rng.randbytes(32)).address
        assert report.struct_hash() == keccak(encode(
            ["bytes32", "uint32", "uint32", "bytes32", "bytes32", "bytes32"],
            [REPORT_TYPEHASH, report.period, report.revision, report.terms_hash, report.evidence_root,
             keccak(report.packed_attainments)]))
        assert domain_separator(chain_id, agreement.lower()) == keccak(encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [DOMAIN_TYPEHASH, keccak(text=DOMAIN_NAME), keccak(text=DOMAIN_VERSION), chain_id, agreement]))
    with pytest.raises(ValueError):
        make_report(2**32, bytes(32), bytes(32), [[1]]).struct_hash()
