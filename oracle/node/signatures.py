"""M-of-N signature exchange between oracle nodes.

Trust model: every node ingests the telemetry itself, freezes its own bundle and computes its own
report. It signs only the digest it computed, and it accepts a peer's signature only for that
same digest, only if the signature recovers to an oracle of the agreement's *on-chain* Config, and
only with low s (as the contract requires). So a peer (or anyone on the network path) can add
nothing but valid signatures over a report this node already agrees with; a peer that computed a
different report simply does not count, and the disagreement is logged. Transport needs no
authentication or confidentiality: signatures are public once submitted anyway. Each node serves
its collected signatures at `GET /v1/signatures/<agreement>/<period>` and polls its peers'."""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from oracle.chain.config import Config
from oracle.chain.signing import recover_signer
from oracle.store.db import insert_ignore, now, signatures

log = logging.getLogger("slacomp.oracle.node.signatures")


def add_signature(engine: Engine, address: str, period: int, digest: bytes, signature: bytes,
                  config: Config, origin: str) -> str | None:
    """Store `signature` if it is an oracle's signature over `digest`; returns the oracle."""
    stored = add_signatures(engine, address, period, digest, [signature], config, origin)
    return stored[0] if stored else None


def add_signatures(engine: Engine, address: str, period: int, digest: bytes, sigs: list[bytes],
                   config: Config, origin: str) -> list[str]:
    """`add_signature` for several signatures over the same digest, stored in one database
    transaction; returns the oracles whose signatures were valid."""
    rows, oracles = [], []
    for signature in sigs:
        oracle = recover_signer(digest, signature)
        if oracle is None or oracle not in config.oracles:
            continue
        oracles.append(oracle)
        rows.append({"address": address, "period": period, "digest": "0x" + digest.hex(), "oracle": oracle,
                     "signature": "0x" + signature.hex(), "origin": origin, "created_at": now()})
    if rows:
        with engine.begin() as conn:
            insert_ignore(conn, signatures, rows)
    return oracles


def collected(engine: Engine, address: str, period: int, digest: bytes, config: Config) -> dict[int, bytes]:
    """oracle index -> signature, for oracles of `config` that signed `digest`."""
    return collected_many(engine, [(address, period, digest, config)])[0]


def collected_many(engine: Engine, wanted: list[tuple[str, int, bytes, Config]]) -> list[dict[int, bytes]]:
    """`collected` for many (agreement address, period, digest, config) at once: one query per
    500 agreements."""
    addresses = sorted({w[0] for w in wanted})
    found: dict[tuple[str, int, str], list[tuple[str, str]]] = {}
    with engine.connect() as conn:
        for i in range(0, len(addresses), 500):
            for r in conn.execute(select(
                    signatures.c.address, signatures.c.period, signatures.c.digest, signatures.c.oracle,
                    signatures.c.signature).where(signatures.c.address.in_(addresses[i:i + 500]))):
                found.setdefault((r.address, r.period, r.digest), []).append((r.oracle, r.signature))
    out = []
    for address, period, digest, config in wanted:
        have = {}
        for oracle, sig in found.get((address, period, "0x" + digest.hex()), []):
            if oracle in config.oracles:
                have[config.oracle_index(oracle)] = bytes.fromhex(sig[2:])
        out.append(have)
    return out


def served(engine: Engine, address: str, period: int) -> dict[str, Any]:
    """What `GET /v1/signatures/<address>/<period>` answers: every digest this node holds
    signatures for (normally one) with its signatures."""
    with engine.connect() as conn:
        rows = conn.execute(select(signatures.c.digest, signatures.c.oracle, signatures.c.signature).where(
            signatures.c.address == address, signatures.c.period == period).order_by(signatures.c.id)).all()
    by_digest: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_digest.setdefault(r.digest, []).append({"oracle": r.oracle, "signature": r.signature})
    return {"agreement": address, "period": period,
            "reports": [{"digest": d, "signatures": s} for d, s in by_digest.items()]}


def pull(engine: Engine, peer: str, address: str, period: int, digest: bytes, config: Config,
         timeout: float = 5.0) -> int:
    """Fetch a peer's signatures for this report; store the valid ones for our digest. Returns how
    many new oracles were added. Network errors are logged and count as nothing."""
    url = f"{peer}/v1/signatures/{address}/{period}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("peer unreachable", extra={"fields": {"peer": peer, "error": str(exc)[:200]}})
        return 0
    before = set(collected(engine, address, period, digest, config))
    ours = "0x" + digest.hex()
    for report in body.get("reports", []):
        if str(report.get("digest", "")).lower() != ours:
            log.warning("peer signed a different report", extra={"fields": {
                "peer": peer, "agreement": address, "period": period, "theirs": report.get("digest"), "ours": ours}})
            continue
        for entry in report.get("signatures", []):
            try:
                sig = bytes.fromhex(str(entry["signature"]).removeprefix("0x"))
            except (KeyError, ValueError):
                continue
            add_signature(engine, address, period, digest, sig, config, origin=peer)
    return len(set(collected(engine, address, period, digest, config)) - before)
