"""The sign step: closed -> signed. The node signs the digest it computed with its local keys,
pulls its peers' signatures (`signatures`), and marks the report signed once M are in hand."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from oracle.chain.config import Config
from oracle.chain.keystore import KeyRing
from oracle.chain.signing import pack_signatures, recover_signer
from oracle.core.addresses import checksum
from oracle.node.chainview import Served
from oracle.node.rows import Row, report, reports_of
from oracle.node.signatures import add_signatures, collected, collected_many, pull
from oracle.node.states import Move, ReportState, move, move_many, note
from oracle.store import db
from oracle.store.db import insert_ignore, signatures

log = logging.getLogger("slacomp.oracle.node.loop")


class Signing:
    """Collects M-of-N signatures over closed reports."""

    def __init__(self, engine: Engine, keyring: KeyRing, peers: Sequence[str],
                 hook: Callable[[str, Row], None]) -> None:
        self.engine, self.keyring, self.peers, self.hook = engine, keyring, peers, hook

    def signing_keys(self, a: Served, config: Config) -> list[str]:
        wanted = [checksum(k) for k in a.spec.keys] or self.keyring.addresses
        return [k for k in wanted if k in self.keyring and k in config.oracles]

    def collect(self, a: Served, config: Config, row: Row) -> Row:
        """Sign with the local keys, pull the peers' signatures; `signed` once M are in hand."""
        assert row["digest"] is not None  # set when the period was closed
        digest = bytes.fromhex(row["digest"][2:])
        have = collected(self.engine, a.address, row["period"], digest, config)
        mine = [self.keyring.sign_digest(address, digest) for address in self.signing_keys(a, config)
                if config.oracle_index(address) not in have]
        if mine:  # one database transaction for all local signatures
            add_signatures(self.engine, a.address, row["period"], digest, mine, config, origin="local")
            have = collected(self.engine, a.address, row["period"], digest, config)
        if len(have) < config.threshold:
            for peer in self.peers:
                pull(self.engine, peer, a.address, row["period"], digest, config)
            have = collected(self.engine, a.address, row["period"], digest, config)
        if len(have) < config.threshold:
            with self.engine.begin() as conn:
                note(conn, row["id"], error=f"{len(have)} of {config.threshold} signatures collected")
            return report(self.engine, a.spec.key, row["period"]) or row
        chosen = dict(sorted(have.items())[:config.threshold])
        with self.engine.begin() as conn:
            move(conn, row["id"], ReportState.SIGNED, signatures="0x" + pack_signatures(chosen).hex(),
                 config="0x" + config.encoded().hex(), error=None)
        return self._signed(a, report(self.engine, a.spec.key, row["period"]) or row, chosen)

    def _signed(self, a: Served, row: Row, chosen: dict[int, bytes]) -> Row:
        """`row` (as stored, signed) is logged and passed to the `signed` hook."""
        log.info("report signed", extra={"fields": {"agreement": a.address, "period": row["period"],
                                                     "oracles": sorted(chosen)}})
        self.hook("signed", row)
        return row

    def collect_many(self, items: list[tuple[Served, Config, Row]]) -> list[Row | Exception]:
        """`collect` for several closed reports: where the local keys (with signatures already
        held) reach the threshold, the signatures and the `signed` states of all are written in
        one database transaction; the others take `collect` (peers)."""
        out: list[Row | Exception | None] = []
        fast: list[tuple[int, list[dict[str, Any]], dict[int, bytes]]] = []
        held = iter(collected_many(self.engine, [
            (a.address, row["period"], bytes.fromhex(str(row["digest"])[2:]), config)
            for a, config, row in items if row["state"] == ReportState.CLOSED]))
        for k, (a, config, row) in enumerate(items):
            try:
                if row["state"] != ReportState.CLOSED:
                    out.append(row)
                    continue
                digest = bytes.fromhex(str(row["digest"])[2:])
                have = next(held)
                new: list[dict[str, Any]] = []  # signature rows
                for address in self.signing_keys(a, config):
                    index = config.oracle_index(address)
                    if index in have:
                        continue
                    sig = self.keyring.sign_digest(address, digest)
                    if recover_signer(digest, sig) != address:
                        continue
                    have[index] = sig
                    new.append({"address": a.address, "period": row["period"], "digest": row["digest"],
                                "oracle": address, "signature": "0x" + sig.hex(), "origin": "local",
                                "created_at": db.now()})
                if len(have) < config.threshold:
                    out.append(self.collect(a, config, row))
                    continue
                fast.append((k, new, dict(sorted(have.items())[:config.threshold])))
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - this agreement only
                out.append(exc)
        if fast:
            with self.engine.begin() as conn:
                insert_ignore(conn, signatures, [r for _, new, _ in fast for r in new])
                move_many(conn, [Move(items[k][2]["id"], ReportState.SIGNED, {
                    "signatures": "0x" + pack_signatures(chosen).hex(), "config": "0x" + items[k][1].encoded().hex(),
                    "error": None}) for k, _, chosen in fast])
            fresh = reports_of(self.engine, [items[k][0].spec.key for k, _, _ in fast])
            for k, _, chosen in fast:
                a, _, row = items[k]
                out[k] = self._signed(a, fresh[a.spec.key].get(row["period"]) or row, chosen)
        return [x for x in out if x is not None]
