"""The outbox's transaction plumbing, shared by its send and confirm steps: the submitter's
account, its policy, fees and nonces, signing and storing a transaction before it is broadcast,
and the report rows and attempts as stored."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from web3 import Web3
from web3.contract import Contract

from oracle.chain.abi import contract, encode_call
from oracle.chain.signing import Signer
from oracle.chain.tx import Rpc, RpcError
from oracle.node.rows import Attempt, Row, as_row
from oracle.node.states import ReportState, move, note
from oracle.store.db import reports, tx_attempts

Hook = Callable[[str, Row], None]
GAS_MARGIN_PCT = 25
FILLER_GAS = 21_000

log = logging.getLogger("slacomp.oracle.node.outbox")


@dataclass(frozen=True)
class TxPolicy:
    confirmations: int = 2
    replace_after: int = 180
    fee_bump_pct: int = 25
    priority_fee_wei: int | None = None
    max_fee_wei: int | None = None
    from_block: int = 0


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def _unhex(s: str) -> bytes:
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


class FeeCapExceeded(RuntimeError):
    def __init__(self, fee: int, cap: int) -> None:
        super().__init__(f"fee {fee} wei would exceed max_fee_wei {cap}; not sending")


class TxBase:
    """What both steps of the outbox share: one submitter account, its database rows."""

    def __init__(self, engine: Engine, w3: Web3, sender: LocalAccount, policy: TxPolicy,
                 clock: Callable[[], float], hook: Hook | None = None,
                 count: Callable[[str, str], None] | None = None) -> None:
        self.engine, self.w3, self.sender, self.policy = engine, w3, sender, policy
        self._signer = Signer(sender.key)
        self.clock = clock
        self.hook: Hook = hook or (lambda point, row: None)
        self.count = count or (lambda name, label: None)
        self.rpc = Rpc(w3)
        self._contracts: dict[str, Contract] = {}
        self._gas_hints: dict[int, int] = {}  # calldata length -> gas limit that was estimated (+ margin)
        self._chain_id: int | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # ------------------------------------------------------------------ state
    def _move(self, row_id: int, to: ReportState, **values: Any) -> None:
        """Change the report's state (through the one writer) and `values`, one transaction."""
        with self.engine.begin() as conn:
            move(conn, row_id, to, **values)

    def _note(self, row_id: int, **values: Any) -> None:
        """Write fields of a report that are not its state (an error, a hash)."""
        with self.engine.begin() as conn:
            note(conn, row_id, **values)

    def _row(self, row_id: int) -> Row:
        with self.engine.connect() as conn:
            return as_row(conn.execute(select(reports).where(reports.c.id == row_id)).mappings().one())

    def _attempts(self, row_id: int) -> list[Attempt]:
        with self.engine.connect() as conn:
            return [cast(Attempt, dict(r)) for r in conn.execute(select(tx_attempts).where(
                tx_attempts.c.report_id == row_id, tx_attempts.c.status != "dropped").order_by(
                tx_attempts.c.id.desc())).mappings()]

    def _rows(self, row_ids: list[int]) -> dict[int, Row]:
        with self.engine.connect() as conn:
            found = conn.execute(select(reports).where(reports.c.id.in_(row_ids))).mappings()
            return {r["id"]: as_row(r) for r in found}

    def _agreement(self, row: Row) -> Contract:
        address = row["address"]
        if address not in self._contracts:
            self._contracts[address] = contract(self.w3, "Agreement", address)
        return self._contracts[address]
    def _call(self, row: Row) -> tuple[str, str]:
        """(to, calldata) of the report's `submitReport` transaction (a signed report: every
        field it names is set)."""
        fields = (row["config"], row["terms_hash"], row["evidence_root"], row["attainments"], row["signatures"])
        config, terms, root, attainments, sigs = (_unhex(f) for f in fields if f is not None)
        return row["address"], encode_call("Agreement", "submitReport", config, row["period"], terms, root,
                                           attainments, sigs)

    def _fees(self, floor: tuple[int, int] | None = None, base: int | None = None,
              tip: int | None = None) -> tuple[int, int]:
        if base is None:
            base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        if self.policy.priority_fee_wei is not None:
            tip = self.policy.priority_fee_wei
        elif tip is None:
            tip = int(self.w3.eth.max_priority_fee)
        max_fee = 2 * base + tip
        if floor is not None:
            bump = 100 + self.policy.fee_bump_pct
            max_fee = max(max_fee, floor[0] * bump // 100 + 1)
            tip = max(tip, floor[1] * bump // 100 + 1)
        tip = min(tip, max_fee)
        return max_fee, tip

    def _next_nonce(self, chain: int | None = None) -> int:
        if chain is None:
            chain = self.w3.eth.get_transaction_count(self.sender.address, "pending")
        with self.engine.connect() as conn:
            ours: list[int] = list(conn.execute(select(tx_attempts.c.nonce).where(
                tx_attempts.c.sender == self.sender.address, tx_attempts.c.status == "pending")).scalars())
        return max([int(chain)] + [n + 1 for n in ours])

    def _store_attempt(self, report_id: int | None, call: Any, nonce: int, gas: int, max_fee: int,
                       tip: int) -> Attempt:
        """Sign the transaction and write it (and its hash into the report) in one database
        transaction, before anything is broadcast."""
        attempt = self._sign(report_id, call, nonce, gas, max_fee, tip)
        with self.engine.begin() as conn:
            conn.execute(tx_attempts.insert().values(**attempt))
            if report_id is not None:
                note(conn, report_id, tx_hash=attempt["tx_hash"])
        return attempt

    def _sign(self, report_id: int | None, call: Any, nonce: int, gas: int, max_fee: int, tip: int,
              ) -> Attempt:
        """Sign locally (a contract call, raw calldata to `to`, or a 0-value self-transfer)."""
        if self.policy.max_fee_wei is not None and max_fee > self.policy.max_fee_wei:
            raise FeeCapExceeded(max_fee, self.policy.max_fee_wei)
        to, data = (self.sender.address, b"") if call is None else (call[0], _unhex(call[1]))
        raw, tx_hash = self._signer.sign_eip1559(self.chain_id, nonce, gas, max_fee, tip, to, 0, data)
        return {"report_id": report_id, "sender": self.sender.address, "nonce": nonce, "gas": gas,
                "tx_hash": _hex(tx_hash), "raw": _hex(raw), "max_fee": str(max_fee),
                "priority_fee": str(tip), "status": "pending", "sent_at": int(self.clock())}

    def _broadcast_many(self, attempts: list[Attempt]) -> None:
        """eth_sendRawTransaction for each stored attempt, in one batch (in nonce order)."""
        answers = self.rpc.batch([("eth_sendRawTransaction", [a["raw"]]) for a in attempts])
        for attempt, answer in zip(attempts, answers):
            if isinstance(answer, RpcError):
                self._refused(attempt, answer)

    def _refused(self, attempt: Attempt, exc: Exception) -> None:
        msg = str(exc).lower()
        if "already known" in msg or "known transaction" in msg or "already imported" in msg:
            return
        # nonce too low / underpriced / anything else: the stored attempt stays; `track`
        # works out from the chain what happened and replaces or resends as needed
        with self.engine.begin() as conn:
            conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == attempt["tx_hash"]).values(
                error=str(exc)[:500]))
        log.warning("broadcast refused", extra={"fields": {"tx": attempt["tx_hash"], "error": str(exc)[:200]}})


    def mark_settled(self, row: Row) -> None:
        """The chain says this period is settled: record by which transaction (never send it)."""
        self._settled_elsewhere(row, self._agreement(row))

    def _settled_elsewhere(self, row: Row, ag: Contract, keep_error: bool = False) -> None:
        """The period is settled on-chain: record by which transaction, and never send it again."""
        logs = ag.events.ReportAccepted().get_logs(from_block=self.policy.from_block,
                                                  argument_filters={"period": row["period"]})
        if not logs:
            self._move(row["id"], ReportState.SETTLED_ELSEWHERE, error="settled on-chain (no ReportAccepted log found)")
            return
        ev = logs[-1]
        tx_hash = _hex(ev["transactionHash"])
        with self.engine.connect() as conn:  # every attempt, also those given up as dropped
            ours: set[str] = set(conn.execute(select(tx_attempts.c.tx_hash).where(
                tx_attempts.c.report_id == row["id"])).scalars())
        if tx_hash in ours:
            # our own transaction after all (state lost between broadcast and write, or the node
            # counted its nonce before it served its receipt and we took it for another's)
            with self.engine.begin() as conn:
                conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == tx_hash).values(
                    status="mined", block_number=ev["blockNumber"], error=None))
            self._move(row["id"], ReportState.MINED, tx_hash=tx_hash, block_number=ev["blockNumber"], error=None)
            return
        root = _hex(ev["args"]["evidenceRoot"])
        note = row["error"] if keep_error else None
        if row.get("evidence_root") and root != row["evidence_root"]:
            note = f"on-chain report has evidence root {root}, ours {row['evidence_root']}"
            self.count("report_disagreements", row["agreement"])
        self._move(row["id"], ReportState.SETTLED_ELSEWHERE, tx_hash=tx_hash, block_number=ev["blockNumber"],
                   error=note)
        self.count("settled_elsewhere", row["agreement"])
        log.info("period already settled on-chain", extra={"fields": {
            "agreement": row["address"], "period": row["period"], "tx": tx_hash}})

