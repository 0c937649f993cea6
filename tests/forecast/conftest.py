"""Builders for the forecast tests: a one-site agreement over January 2027 (UTC, business
hours Monday to Friday 09:00-17:00) with hand-written evidence, and a local webhook receiver."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from oracle.core.terms import Terms, load_terms
from oracle.evidence.load import Evidence, load_evidence

HOUR = 3600

TERMS = """schema: slacomp/v1
agreement: hand-2027
timezone: UTC
currency: {{symbol: USDC, decimals: 6}}
monthly_fee: "1000"
telemetry: {{stale_after: 40d, missing_data: down}}
sites:
  - {{id: s1, fee: "100"{hours}}}
objectives:
  - {{id: avail, kpi: site_availability, scope: per_site, target_bps: {target},
     credits: [{{below_bps: {target}, credit_bps: 10000}}]}}
  - {{id: uptime, kpi: device_uptime, scope: estate, target_bps: {target},
     credits: [{{below_bps: {target}, credit_bps: 500}}]}}
term: {{first_period: "2027-01", periods: 1}}
"""
BUSINESS = ', business_hours: {mon-fri: "09:00-17:00"}'


def write_case(folder: Path, events: Sequence[tuple[str, str, str]], exclusions: Sequence[tuple[str, str, str]] = (),
               target: int = 9500, business_hours: bool = True) -> tuple[Terms, Evidence]:
    """Terms + evidence of device D1 at site s1, events (ts, device, state)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "terms.yaml").write_text(TERMS.format(hours=BUSINESS if business_hours else "", target=target))
    ev = folder / "evidence"
    ev.mkdir(exist_ok=True)
    (ev / "devices.csv").write_text("device_id,site_id,deployed_at\nD1,s1,2026-12-01T00:00:00Z\n")
    (ev / "events.csv").write_text("ts,device_id,state\n" + "".join(f"{t},{d},{s}\n" for t, d, s in events))
    (ev / "exclusions.csv").write_text("start,end,scope,reason\n"
                                       + "".join(f"{a},{b},{s},planned\n" for a, b, s in exclusions))
    terms = load_terms(folder / "terms.yaml")
    return terms, load_evidence(ev, terms)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: records every request; answers with the queued
    status codes first, then 200."""

    url: str
    requests: list[dict] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)

    def bodies(self) -> list[dict]:
        return [r["body"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                rec.requests.append({"headers": dict(self.headers), "body": body})
                code = rec.codes.pop(0) if rec.codes else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
