"""Benchmark of the API's status endpoint under an open-loop local load generator.

Starts Anvil, deploys an agreement under the example terms, ingests the example telemetry into a
SQLite database, serves the API with `slacomp api` (uvicorn, one worker, its own process), then
sends GET /v1/agreements/<a>/status at a fixed rate (requests are scheduled on a clock, so a slow
answer does not slow the sender: latency includes queueing). Prints p50/p90/p99/max latency and the
achieved requests/second. Target: p99 <= 50 ms at 200 requests/second.

    .venv/bin/python bench/api.py [--rate 200] [--seconds 15] [--as-of 2026-10-20T00:00:00Z]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from eth_account import Account
from eth_utils import keccak

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.auth import hash_key  # noqa: E402
from oracle.chain import devchain  # noqa: E402
from oracle.chain.config import config_from_terms  # noqa: E402
from oracle.chain.tx import create_agreement, deploy_factory  # noqa: E402
from oracle.core.terms import load_terms, terms_hash  # noqa: E402
from oracle.store.db import connect  # noqa: E402
from oracle.store.ingest import ingest_file  # noqa: E402

EXAMPLE = ROOT / "examples" / "acme-ev"
KEY = "slk_bench_auditor"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(url: str, work: Path) -> tuple[str, dict[str, str]]:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url))
    vendor, customer = w3.eth.accounts[:2]
    terms = load_terms(EXAMPLE / "terms.yaml")
    oracles = [Account.from_key(keccak(text=f"bench oracle {i}")).address for i in range(3)]
    config = config_from_terms(terms, customer=customer, asset="0x" + "00" * 20, oracles=oracles, threshold=2)
    agreement, _ = create_agreement(w3, deploy_factory(w3, vendor), vendor, config, customer=customer)
    db_url = f"sqlite:///{work / 'oracle.db'}"
    engine = connect(db_url)
    for name in ("devices.csv", "events.csv", "exclusions.csv"):
        ingest_file(engine, terms, agreement.address.lower(), EXAMPLE / "evidence" / name)
    engine.dispose()
    (work / "data" / "terms").mkdir(parents=True)
    (work / "data" / "terms" / f"{terms_hash(terms)}.yaml").write_bytes((EXAMPLE / "terms.yaml").read_bytes())
    (work / "keys.json").write_text(json.dumps({"keys": [{"id": "bench", "role": "auditor", "sha256": hash_key(KEY)}]}))
    env = dict(os.environ, SLACOMP_API_RPC_URL=url, SLACOMP_API_DB_URL=db_url,
               SLACOMP_API_DATA_DIR=str(work / "data"), SLACOMP_API_KEYS_FILE=str(work / "keys.json"))
    return agreement.address, env


async def load(url: str, rate: float, seconds: float) -> tuple[list[float], int, float]:
    """Open loop: request i is due at t0 + i/rate whatever happened before (aiohttp: a light client,
    so the generator is not the bottleneck on a small machine)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn, headers={"X-API-Key": KEY},
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(50):  # warm-up: first computation, connections
            async with session.get(url) as r:
                r.raise_for_status()
                await r.read()

        async def one(at: float) -> None:
            nonlocal errors
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with session.get(url) as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            latencies.append(time.perf_counter() - at)  # from the scheduled instant: queueing counts
            errors += not ok

        n = int(rate * seconds)
        t0 = time.perf_counter() + 0.1
        start = time.perf_counter()
        await asyncio.gather(*(one(t0 + i / rate) for i in range(n)))
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--as-of", dest="as_of", help="pin month-to-date (default: now, as the dashboard asks)")
    args = ap.parse_args()
    with devchain.start("anvil") as chain, tempfile.TemporaryDirectory(prefix="slacomp-bench-") as d:
        work = Path(d)
        agreement, env = setup(chain.url, work)
        port = _free_port()
        server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "slacomp"), "api", "--port", str(port),
                                   "--log-level", "warning"], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(base + "/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the API did not become ready")
                time.sleep(0.2)
            url = f"{base}/v1/agreements/{agreement}/status" + (f"?as_of={args.as_of}" if args.as_of else "")
            lat, errors, elapsed = asyncio.run(load(url, args.rate, args.seconds))
        finally:
            server.terminate()
            server.wait(timeout=10)
    ms = [x * 1000 for x in lat]
    out = {"endpoint": "GET /v1/agreements/{a}/status" + (" ?as_of=" + args.as_of if args.as_of else " (now)"),
           "target_rps": args.rate, "requests": len(ms), "errors": errors,
           "achieved_rps": round(len(ms) / elapsed, 1), "p50_ms": round(pct(ms, 50), 2),
           "p90_ms": round(pct(ms, 90), 2), "p99_ms": round(pct(ms, 99), 2), "max_ms": round(max(ms), 2),
           "mean_ms": round(statistics.fmean(ms), 2), "target_p99_ms": 50,
           "ok": errors == 0 and pct(ms, 99) <= 50}
    print(json.dumps(out, indent=2))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
