"""The durable outbox: moves a signed report to the chain exactly once.

States (column `reports.state`), each written before the step that follows it:

    closed ─▶ signed ─▶ sent ─▶ mined ─▶ confirmed          (settled by us)
                  └──────┴───────┴─▶ settled_elsewhere        (another submitter was first)
                  └──────┴─▶ failed                           (reverted with a decoded custom error)

Every transaction is signed and stored (`tx_attempts`: nonce, hash, raw bytes, fees) *before* it
is broadcast, so a restart rebroadcasts the same bytes or replaces them at the same nonce with a
higher fee; it never builds a second transaction for a nonce it cannot account for. Before
anything is sent, and whenever it is unsure, the outbox asks the contract (`nextPeriod`,
`ReportAccepted` logs): a period settled on-chain is never sent again. The contract itself
settles a period at most once; the outbox makes sure it is settled at least once, with no
duplicate transaction."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound, Web3RPCError

from .chain import contract, decode_error
from .db import now, reports, tx_attempts

CLOSED, SIGNED, SENT, MINED, CONFIRMED = "closed", "signed", "sent", "mined", "confirmed"
SETTLED_ELSEWHERE, FAILED = "settled_elsewhere", "failed"
FINAL = (CONFIRMED, SETTLED_ELSEWHERE, FAILED)
IN_FLIGHT = (SENT, MINED)
GAS_MARGIN_PCT = 25
FILLER_GAS = 21_000
# Errors that say "not yet", not "never": the report stays signed and is retried.
RETRYABLE = ("PeriodNotEnded", "PeriodOutOfOrder")

Hook = Callable[[str, dict[str, Any]], None]
log = logging.getLogger("slacomp.oracle.outbox")


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


class Outbox:
    """Sends and tracks report transactions from one submitter account."""

    def __init__(self, engine: Engine, w3: Web3, sender: LocalAccount, policy: TxPolicy,
                 clock: Callable[[], float], hook: Hook | None = None,
                 count: Callable[[str, str], None] | None = None) -> None:
        self.engine, self.w3, self.sender, self.policy = engine, w3, sender, policy
        self.clock = clock
        self.hook: Hook = hook or (lambda point, row: None)
        self.count = count or (lambda name, label: None)

    # ------------------------------------------------------------------ state

    def _set(self, row_id: int, state: str | None = None, **values: Any) -> None:
        if state is not None:
            values["state"] = state
        with self.engine.begin() as conn:
            conn.execute(update(reports).where(reports.c.id == row_id).values(updated_at=now(), **values))

    def _row(self, row_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(reports).where(reports.c.id == row_id)).mappings().one())

    def _attempts(self, row_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(tx_attempts).where(
                tx_attempts.c.report_id == row_id, tx_attempts.c.status != "dropped").order_by(
                tx_attempts.c.id.desc())).mappings()]

    def _agreement(self, row: dict[str, Any]) -> Contract:
        return contract(self.w3, "Agreement", row["address"])

    # ------------------------------------------------------------------ entry points

    def step(self, row_id: int) -> str:
        """Advance one report as far as it can go now (signed -> sent -> mined -> confirmed when
        the chain allows, without waiting); returns its new state."""
        row = self._row(row_id)
        for _ in range(4):
            before = row["state"]
            if before == SIGNED:
                self.submit(row)
            elif before == SENT:
                self.track(row)
            elif before == MINED:
                self.confirm(row)
            row = self._row(row_id)
            if row["state"] == before or row["state"] in FINAL:
                break
        return str(row["state"])

    def submit(self, row: dict[str, Any]) -> None:
        """signed -> sent: check the chain, preflight, sign, store, then broadcast."""
        ag = self._agreement(row)
        period = row["period"]
        next_period = ag.functions.nextPeriod().call()
        if next_period > period:
            self._settled_elsewhere(row, ag)
            return
        if next_period < period:
            self._set(row["id"], error=f"waiting for period {next_period} to settle first")
            return
        cfg = _unhex(row["config"])
        if bytes(ag.functions.configHash().call()) != keccak(cfg):
            # the parties rotated the oracle set since we signed: collect signatures again
            self._set(row["id"], CLOSED, signatures=None, error="oracle set changed on-chain; re-signing")
            return
        call = self._call(ag, row)
        try:
            gas = call.estimate_gas({"from": self.sender.address})
        except (ContractCustomError, ContractLogicError) as exc:
            self._preflight_failed(row, ag, _revert_text(exc))
            return
        gas = gas * (100 + GAS_MARGIN_PCT) // 100
        max_fee, tip = self._fees()
        nonce = self._next_nonce()
        attempt = self._store_attempt(row["id"], call, nonce, gas, max_fee, tip,
                                      report_values={"state": SENT, "error": None})
        log.info("report sent", extra={"fields": {"agreement": row["address"], "period": period,
                                                   "tx": attempt["tx_hash"], "nonce": nonce}})
        self.hook("sent_persisted", row)
        self._broadcast(attempt)
        self.count("reports_sent", row["agreement"])
        self.hook("broadcast", row)

    def track(self, row: dict[str, Any]) -> None:
        """sent -> mined (or replaced, rebroadcast, settled elsewhere)."""
        attempts = self._attempts(row["id"])
        if not attempts:  # crashed between writing the state and the attempt: cannot happen (one txn)
            self._set(row["id"], SIGNED)
            return
        if self._check_receipts(row, attempts):
            return
        newest = attempts[0]
        nonce = newest["nonce"]
        if self.w3.eth.get_transaction_count(self.sender.address, "latest") > nonce:
            if self._check_receipts(row, attempts):  # mined in between
                return
            # nonce used by a transaction that is none of ours for this report
            with self.engine.begin() as conn:
                conn.execute(update(tx_attempts).where(tx_attempts.c.report_id == row["id"]).values(
                    status="dropped", error=f"nonce {nonce} used by another transaction"))
            ag = self._agreement(row)
            if ag.functions.nextPeriod().call() > row["period"]:
                self._settled_elsewhere(row, ag)
            else:
                self._set(row["id"], SIGNED, error=f"nonce {nonce} was taken by another transaction; resending")
                self.count("nonce_conflicts", row["agreement"])
            return
        # a lower nonce that is neither mined nor pending would block ours forever
        self._fill_gaps(nonce)
        if not any(self._known(a["tx_hash"]) for a in attempts):
            # dropped from the mempool (node restart, eviction): rebroadcast the same bytes
            log.warning("rebroadcasting", extra={"fields": {"tx": newest["tx_hash"], "nonce": nonce}})
            self._broadcast(newest)
            self.count("rebroadcasts", row["agreement"])
            return
        if self.clock() - newest["sent_at"] >= self.policy.replace_after:
            self._replace(row, newest)

    def confirm(self, row: dict[str, Any]) -> None:
        """mined -> confirmed after N blocks (or back to sent if the block was reorganised away)."""
        receipt = self._receipt(row["tx_hash"])
        if receipt is None:
            with self.engine.begin() as conn:
                conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == row["tx_hash"]).values(
                    status="pending", block_number=None))
            self._set(row["id"], SENT, block_number=None, error="receipt vanished (reorg); tracking again")
            return
        depth = self.w3.eth.block_number - receipt["blockNumber"] + 1
        if depth >= self.policy.confirmations:
            self._set(row["id"], CONFIRMED, block_number=receipt["blockNumber"])
            self.count("reports_confirmed", row["agreement"])
            log.info("report confirmed", extra={"fields": {"agreement": row["address"], "period": row["period"],
                                                            "tx": row["tx_hash"], "depth": depth}})

    def mark_settled(self, row: dict[str, Any]) -> None:
        """The chain says this period is settled: record by which transaction (never send it)."""
        self._settled_elsewhere(row, self._agreement(row))

    def record(self, row_id: int, state: str | None = None, **values: Any) -> None:
        """Write a report's state and/or fields (one database transaction)."""
        self._set(row_id, state, **values)

    # ------------------------------------------------------------------ helpers

    def _call(self, ag: Contract, row: dict[str, Any]) -> Any:
        return ag.functions.submitReport(_unhex(row["config"]), row["period"], _unhex(row["terms_hash"]),
                                         _unhex(row["evidence_root"]), _unhex(row["attainments"]),
                                         _unhex(row["signatures"]))

    def _preflight_failed(self, row: dict[str, Any], ag: Contract, error: str) -> None:
        name = error.split("(", 1)[0]
        if name == "PeriodAlreadySettled":
            self._settled_elsewhere(row, ag)
        elif name in RETRYABLE:
            self._set(row["id"], error=error)
            self.count("preflight_waits", row["agreement"])
        else:
            self._set(row["id"], FAILED, error=error)
            self.count("reports_failed", row["agreement"])
            log.error("report rejected by the contract", extra={"fields": {
                "agreement": row["address"], "period": row["period"], "error": error}})

    def _fees(self, floor: tuple[int, int] | None = None) -> tuple[int, int]:
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        tip = self.policy.priority_fee_wei if self.policy.priority_fee_wei is not None \
            else int(self.w3.eth.max_priority_fee)
        max_fee = 2 * base + tip
        if floor is not None:
            bump = 100 + self.policy.fee_bump_pct
            max_fee = max(max_fee, floor[0] * bump // 100 + 1)
            tip = max(tip, floor[1] * bump // 100 + 1)
        tip = min(tip, max_fee)
        return max_fee, tip

    def _next_nonce(self) -> int:
        chain = self.w3.eth.get_transaction_count(self.sender.address, "pending")
        with self.engine.connect() as conn:
            ours = conn.execute(select(tx_attempts.c.nonce).where(
                tx_attempts.c.sender == self.sender.address, tx_attempts.c.status == "pending")).scalars().all()
        return max([chain] + [n + 1 for n in ours])

    def _store_attempt(self, report_id: int | None, call: Any, nonce: int, gas: int, max_fee: int,
                       tip: int, report_values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sign the transaction and write it (and the report's new state) in one database
        transaction, before anything is broadcast."""
        if self.policy.max_fee_wei is not None and max_fee > self.policy.max_fee_wei:
            raise FeeCapExceeded(max_fee, self.policy.max_fee_wei)
        params = {"from": self.sender.address, "nonce": nonce, "gas": gas, "maxFeePerGas": max_fee,
                  "maxPriorityFeePerGas": tip, "chainId": self.w3.eth.chain_id}
        tx = call.build_transaction(params) if call is not None else \
            params | {"to": self.sender.address, "value": 0, "data": b""}
        tx.pop("from", None)
        signed = self.sender.sign_transaction(tx)
        attempt = {"report_id": report_id, "sender": self.sender.address, "nonce": nonce, "gas": gas,
                   "tx_hash": _hex(signed.hash), "raw": _hex(signed.raw_transaction), "max_fee": str(max_fee),
                   "priority_fee": str(tip), "status": "pending", "sent_at": int(self.clock())}
        with self.engine.begin() as conn:
            conn.execute(tx_attempts.insert().values(**attempt))
            if report_id is not None:
                conn.execute(update(reports).where(reports.c.id == report_id).values(
                    tx_hash=attempt["tx_hash"], updated_at=now(), **(report_values or {})))
        return attempt

    def _broadcast(self, attempt: dict[str, Any]) -> None:
        try:
            self.w3.eth.send_raw_transaction(_unhex(attempt["raw"]))
        except (Web3RPCError, ValueError) as exc:
            msg = str(exc).lower()
            if "already known" in msg or "known transaction" in msg or "already imported" in msg:
                return
            # nonce too low / underpriced / anything else: the stored attempt stays; `track`
            # works out from the chain what happened and replaces or resends as needed
            with self.engine.begin() as conn:
                conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == attempt["tx_hash"]).values(
                    error=str(exc)[:500]))
            log.warning("broadcast refused", extra={"fields": {"tx": attempt["tx_hash"], "error": str(exc)[:200]}})

    def _replace(self, row: dict[str, Any], old: dict[str, Any]) -> None:
        """Same nonce, higher fees: whichever of the two is mined settles the period once."""
        max_fee, tip = self._fees(floor=(int(old["max_fee"]), int(old["priority_fee"])))
        try:
            attempt = self._store_attempt(row["id"], self._call(self._agreement(row), row), old["nonce"],
                                          old["gas"], max_fee, tip)
        except FeeCapExceeded as exc:
            self._set(row["id"], error=str(exc))
            return
        with self.engine.begin() as conn:
            conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == old["tx_hash"]).values(status="replaced"))
        log.warning("replacing stuck transaction", extra={"fields": {
            "old": old["tx_hash"], "new": attempt["tx_hash"], "nonce": old["nonce"], "max_fee": max_fee}})
        self._broadcast(attempt)
        self.count("tx_replacements", row["agreement"])

    def _fill_gaps(self, nonce: int) -> None:
        """Nonces below `nonce` that are neither mined, pending at the node, nor ours to
        rebroadcast would block our transaction forever: fill them with 0-value self-transfers."""
        pending = self.w3.eth.get_transaction_count(self.sender.address, "pending")
        if pending >= nonce:
            return
        with self.engine.connect() as conn:
            held = {r.nonce: r for r in conn.execute(select(tx_attempts).where(
                tx_attempts.c.sender == self.sender.address, tx_attempts.c.status.in_(("pending", "replaced")),
                tx_attempts.c.nonce >= pending, tx_attempts.c.nonce < nonce))}
        for k in range(pending, nonce):
            if k in held:
                self._broadcast(dict(held[k]._mapping))
                continue
            max_fee, tip = self._fees()
            filler = self._store_attempt(None, None, k, FILLER_GAS, max_fee, tip)
            log.warning("filling nonce gap", extra={"fields": {"nonce": k, "tx": filler["tx_hash"]}})
            self._broadcast(filler)

    def _receipt(self, tx_hash: str) -> Any:
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def _known(self, tx_hash: str) -> bool:
        try:
            return self.w3.eth.get_transaction(tx_hash) is not None
        except TransactionNotFound:
            return False

    def _check_receipts(self, row: dict[str, Any], attempts: list[dict[str, Any]]) -> bool:
        for attempt in attempts:
            receipt = self._receipt(attempt["tx_hash"])
            if receipt is not None:
                self._on_mined(row, attempt, receipt)
                return True
        return False

    def _on_mined(self, row: dict[str, Any], attempt: dict[str, Any], receipt: Any) -> None:
        ok = receipt["status"] == 1
        with self.engine.begin() as conn:
            conn.execute(update(tx_attempts).where(
                tx_attempts.c.report_id == row["id"], tx_attempts.c.nonce == attempt["nonce"],
                tx_attempts.c.tx_hash != attempt["tx_hash"]).values(status="replaced"))
            conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == attempt["tx_hash"]).values(
                status="mined" if ok else "reverted", block_number=receipt["blockNumber"]))
        if ok:
            self._set(row["id"], MINED, tx_hash=attempt["tx_hash"], block_number=receipt["blockNumber"], error=None)
            self.count("reports_mined", row["agreement"])
            log.info("report mined", extra={"fields": {"agreement": row["address"], "period": row["period"],
                                                        "tx": attempt["tx_hash"], "block": receipt["blockNumber"]}})
            return
        error = self.revert_reason(attempt["tx_hash"], receipt)
        with self.engine.begin() as conn:
            conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == attempt["tx_hash"]).values(error=error))
        self._set(row["id"], error=error)
        log.error("report transaction reverted", extra={"fields": {
            "agreement": row["address"], "period": row["period"], "tx": attempt["tx_hash"], "error": error}})
        if error.startswith("PeriodAlreadySettled"):
            self._settled_elsewhere(self._row(row["id"]), self._agreement(row), keep_error=True)
        else:
            self._set(row["id"], FAILED, tx_hash=attempt["tx_hash"], block_number=receipt["blockNumber"])
            self.count("reports_failed", row["agreement"])

    def revert_reason(self, tx_hash: str, receipt: Any) -> str:
        """The decoded custom error of a mined, reverted transaction: from the node's call trace,
        else by replaying the call at the block it was mined in."""
        try:
            trace = self.w3.provider.make_request("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
            output = (trace.get("result") or {}).get("output")
            if output and output != "0x":
                return decode_error(output)
        except Exception:  # noqa: BLE001 - node without debug_*: fall back to a replay
            pass
        tx = self.w3.eth.get_transaction(tx_hash)
        try:
            self.w3.eth.call({"from": tx["from"], "to": tx["to"], "data": tx["input"], "gas": tx["gas"]},
                             receipt["blockNumber"])
        except (ContractCustomError, ContractLogicError) as exc:
            return _revert_text(exc)
        return "reverted (reason unavailable)"

    def _settled_elsewhere(self, row: dict[str, Any], ag: Contract, keep_error: bool = False) -> None:
        """The period is settled on-chain: record by which transaction, and never send it again."""
        logs = ag.events.ReportAccepted().get_logs(from_block=self.policy.from_block,
                                                  argument_filters={"period": row["period"]})
        if not logs:
            self._set(row["id"], SETTLED_ELSEWHERE, error="settled on-chain (no ReportAccepted log found)")
            return
        ev = logs[-1]
        tx_hash = _hex(ev["transactionHash"])
        ours = {a["tx_hash"] for a in self._attempts(row["id"])}
        if tx_hash in ours:  # our own transaction after all (e.g. state lost between broadcast and write)
            self._set(row["id"], MINED, tx_hash=tx_hash, block_number=ev["blockNumber"])
            return
        root = _hex(ev["args"]["evidenceRoot"])
        note = row["error"] if keep_error else None
        if row.get("evidence_root") and root != row["evidence_root"]:
            note = f"on-chain report has evidence root {root}, ours {row['evidence_root']}"
            self.count("report_disagreements", row["agreement"])
        self._set(row["id"], SETTLED_ELSEWHERE, tx_hash=tx_hash, block_number=ev["blockNumber"], error=note)
        self.count("settled_elsewhere", row["agreement"])
        log.info("period already settled on-chain", extra={"fields": {
            "agreement": row["address"], "period": row["period"], "tx": tx_hash}})


class FeeCapExceeded(RuntimeError):
    def __init__(self, fee: int, cap: int) -> None:
        super().__init__(f"fee {fee} wei would exceed max_fee_wei {cap}; not sending")


def _revert_text(exc: Exception) -> str:
    data = getattr(exc, "data", None)
    if isinstance(data, (str, bytes)) and data and data not in ("0x", b""):
        return decode_error(data)
    return str(exc) or type(exc).__name__

