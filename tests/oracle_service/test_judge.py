"""Judging a proposal before it pays: the replay the watcher disputes on and the arbiter signs,
from a bundle folder or downloaded from a real HTTP server on loopback."""
from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from oracle.evidence.bundle import BundleError
from oracle.verify.judge import BundleSource, FetchError, Proposal, judge, resolved_attainments
from tests.e2e.helpers import rewrite_bundle
from tests.oracle_service.test_bundle_keystore import _bundle

AGREEMENT = "0x" + "ab" * 20


def _proposal(result, attainments=None, root=None) -> Proposal:
    signed = attainments if attainments is not None else [[r.attainment_bps for r in o.results]
                                                          for o in result.objectives]
    return Proposal(0, "2026-10", 0, root or result.evidence_root, signed)


def _wrong(result) -> list[list[int]]:
    signed = [[r.attainment_bps for r in o.results] for o in result.objectives]
    signed[0][0] = 10_000 if signed[0][0] != 10_000 else 9_000
    return signed


def test_a_faithful_proposal_passes_and_a_changed_attainment_is_named(tmp_path):
    store = tmp_path / "bundles"
    bundle, result = _bundle(tmp_path, store)
    source = BundleSource(str(store), tmp_path / "cache")
    good = judge(source, AGREEMENT, _proposal(result))
    assert good.ok and good.bundle == bundle.id and good.reason == "KPIs recomputed bit for bit"
    wrong = _wrong(result)
    bad = judge(source, AGREEMENT, _proposal(result, wrong))
    first = result.objectives[0]
    assert not bad.ok
    assert bad.reason == (f"period 0 (2026-10) revision 0: KPI mismatch: {first.id}/{first.results[0].subject}: "
                          f"signed {wrong[0][0]}, recomputed {first.results[0].attainment_bps}")
    # the arbiter signs what the bundle recomputes, whatever was proposed
    assert resolved_attainments(store, result.evidence_root) == [[r.attainment_bps for r in o.results]
                                                                 for o in result.objectives]


def test_missing_and_tampered_evidence_are_discrepancies(tmp_path):
    store = tmp_path / "bundles"
    bundle, result = _bundle(tmp_path, store)
    source = BundleSource(str(store), tmp_path / "cache")
    missing = judge(source, AGREEMENT, _proposal(result, root="0x" + "11" * 32))
    assert not missing.ok and "evidence missing" in missing.reason
    rewrite_bundle(bundle.path, {"evidence/events.csv": lambda b: b.replace(b"faulted", b"available")})
    tampered = judge(source, AGREEMENT, _proposal(result))
    assert not tampered.ok and "evidence tampered" in tampered.reason and "events.csv" in tampered.reason
    with pytest.raises(BundleError, match="no intact bundle"):
        resolved_attainments(store, result.evidence_root)


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append((self.path, self.headers.get("X-API-Key")))
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"files": {}, "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def test_bundles_are_downloaded_from_the_vendor_api_and_kept(tmp_path, server):
    base, handler = server
    bundle, result = _bundle(tmp_path, tmp_path / "vendor")
    path = f"/v1/agreements/{AGREEMENT}/periods/0/evidence"
    handler.files[path] = Path(bundle.path).read_bytes()
    source = BundleSource(base + "/", tmp_path / "cache", api_key="k-123")
    verdict = judge(source, AGREEMENT, _proposal(result))
    assert verdict.ok and verdict.bundle == bundle.id
    assert handler.seen == [(path, "k-123")]
    assert judge(source, AGREEMENT, _proposal(result, _wrong(result))).ok is False
    assert len(handler.seen) == 1  # the kept copy answers the second judgement
    # a period with nothing published is missing evidence; a corrupt download is tampered evidence
    handler.files.clear()
    other = Proposal(1, "2026-11", 0, "0x" + "22" * 32, [[1]])
    assert "evidence missing" in judge(source, AGREEMENT, other).reason
    handler.files[f"/v1/agreements/{AGREEMENT}/periods/1/evidence"] = b"PK\x03\x04 not a zip"
    assert "evidence tampered: published bundle" in judge(source, AGREEMENT, other).reason


def test_an_unreachable_source_gives_no_verdict(tmp_path):
    source = BundleSource("http://127.0.0.1:9/", tmp_path / "cache", timeout_s=2)
    with pytest.raises(FetchError, match="GET http://127.0.0.1:9/v1/agreements/"):
        judge(source, AGREEMENT, Proposal(0, "2026-10", 0, "0x" + "11" * 32, [[1]]))
