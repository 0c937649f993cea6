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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Engine
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound

from oracle.chain.abi import Rpc, RpcError, contract, decode_error, encode_call
from oracle.chain.signing import Signer
from oracle.store.db import now, reports, tx_attempts

CLOSED, SIGNED, SENT, MINED, CONFIRMED = "closed", "signed", "sent", "mined", "confirmed"
SETTLED_ELSEWHERE, FAILED = "settled_elsewhere", "failed"
FINAL = (CONFIRMED, SETTLED_ELSEWHERE, FAILED)
IN_FLIGHT = (SENT, MINED)
GAS_MARGIN_PCT = 25
FILLER_GAS = 21_000
# after a batch broadcast the node may still be mining: the sender's mined nonce count is polled
# (every 20 ms) and the receipts of the transactions below it asked for, until 10 polls in a row
# bring none (or 200 polls)
RECEIPT_POLLS = 200
RECEIPT_POLL_S = 0.02
RECEIPT_QUIET_POLLS = 10
# Errors that say "not yet", not "never": the report stays signed and is retried.
RETRYABLE = ("PeriodNotEnded", "PeriodOutOfOrder")

Hook = Callable[[str, dict[str, Any]], None]
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


class Outbox:
    """Sends and tracks report transactions from one submitter account."""

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

    def _rows(self, row_ids: list[int]) -> dict[int, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {r["id"]: dict(r) for r in conn.execute(select(reports).where(reports.c.id.in_(row_ids))).mappings()}

    def _agreement(self, row: dict[str, Any]) -> Contract:
        address = row["address"]
        if address not in self._contracts:
            self._contracts[address] = contract(self.w3, "Agreement", address)
        return self._contracts[address]

    # ------------------------------------------------------------------ entry points

    def step(self, row_id: int) -> str:
        """Advance one report as far as it can go now (signed -> sent -> mined -> confirmed when
        the chain allows, without waiting); returns its new state."""
        out = self.step_many([row_id])[row_id]
        if isinstance(out, Exception):
            raise out
        return out

    def step_many(self, row_ids: list[int], wait: bool = True) -> dict[int, str | Exception]:
        """`step` for many reports at once, each stage batched: the preflights of every signed
        report in one JSON-RPC batch, every transaction signed and stored (one database
        transaction) before any is broadcast, the broadcasts in one batch, then every receipt in
        one batch. Returns each report's new state, or the exception that stopped it (the others
        go on). Transport failures (node down) raise. `wait=False`: receipts are read once, not
        waited for, and a transaction not mined yet is left as it is (sent) for a later step."""
        results: dict[int, str | Exception] = {}
        rows = self._rows(row_ids)
        todo = list(rows.values())
        for _ in range(4):
            if not todo:
                break
            before = {r["id"]: r["state"] for r in todo}
            signed = [r for r in todo if r["state"] == SIGNED]
            sent = [r for r in todo if r["state"] == SENT]
            mined = [r for r in todo if r["state"] == MINED]
            if mined:
                self.confirm_many(mined, results)
            if sent:
                self.track_many(sent, results, wait)
            if signed:
                self.submit_many(signed, results)
            rows |= self._rows([r["id"] for r in todo])
            todo = [rows[i] for i, st in before.items()
                    if i not in results and rows[i]["state"] != st and rows[i]["state"] not in FINAL]
        for i, row in rows.items():
            results.setdefault(i, str(row["state"]))
        return results

    def submit(self, row: dict[str, Any]) -> None:
        """signed -> sent: check the chain, preflight, sign, store, then broadcast."""
        results: dict[int, str | Exception] = {}
        self.submit_many([row], results)
        if isinstance(results.get(row["id"]), Exception):
            raise results[row["id"]]  # type: ignore[misc]

    def submit_many(self, rows: list[dict[str, Any]], results: dict[int, str | Exception]) -> None:
        """signed -> sent for many reports: one JSON-RPC batch runs, for each, the preflight (the
        call itself on the latest state: it succeeds, so the transaction will, on that state),
        plus the base fee and our pending nonce. A report whose preflight reverts has the
        contract's `nextPeriod` and `configHash` read (one more batch) to tell why: settled
        elsewhere, waiting for an earlier period, the oracle set changed (sign again), or a
        revert to record. Then every transaction is signed here with consecutive nonces and
        stored, with its report's new state, in one database transaction; only then are they
        broadcast (one batch)."""
        me = self.sender.address
        calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", ["latest", False]),
                                              ("eth_getTransactionCount", [me, "pending"])]
        if self.policy.priority_fee_wei is None:
            calls.append(("eth_maxPriorityFeePerGas", []))
        head = len(calls)
        payloads = {r["id"]: self._call(r) for r in rows}
        hints: dict[int, int] = {}  # row index -> gas limit its preflight eth_call was made with
        for k, r in enumerate(rows):
            to, data = payloads[r["id"]]
            hint = self._gas_hints.get(len(data))
            if hint:
                hints[k] = hint
            # with a gas limit already measured for calls of this size, an eth_call at that
            # limit; else (or if that call fails in any way) the node's estimate
            calls.append(("eth_call", [{"from": me, "to": to, "data": data, "gas": hex(hint)}, "latest"]) if hint
                         else ("eth_estimateGas", [{"from": me, "to": to, "data": data}]))
        answers = self.rpc.batch(calls)
        for a in answers[:head]:
            if isinstance(a, RpcError):
                raise a
        gases = answers[head:]
        retry = {k for k in hints if isinstance(gases[k], RpcError)}
        if retry:  # the limit was not enough, or the call reverts: the node's estimate decides
            order = sorted(retry)
            for k, gas in zip(order, self.rpc.batch([("eth_estimateGas", [{
                    "from": me, "to": payloads[rows[k]["id"]][0], "data": payloads[rows[k]["id"]][1]}])
                    for k in order])):
                gases[k] = gas
        why = [k for k, gas in enumerate(gases) if isinstance(gas, RpcError) and gas.is_revert]
        state: dict[int, tuple[Any, Any]] = {}
        if why:
            more = self.rpc.batch([c for k in why for c in (
                ("eth_call", [{"to": payloads[rows[k]["id"]][0], "data": encode_call("Agreement", f)}, "latest"])
                for f in ("nextPeriod", "configHash"))])
            state = {k: (more[2 * j], more[2 * j + 1]) for j, k in enumerate(why)}
        base = int((answers[0] or {}).get("baseFeePerGas") or "0x0", 16)
        chain_nonce = int(answers[1], 16)
        tip = int(answers[2], 16) if self.policy.priority_fee_wei is None else None
        go: list[tuple[dict[str, Any], int]] = []
        for k, r in enumerate(rows):
            gas = gases[k]
            try:
                if isinstance(gas, RpcError):
                    if not gas.is_revert:
                        raise gas
                    self._explain_revert(r, gas, *state[k])
                else:
                    if k in hints and k not in retry:
                        limit = hints[k]  # the eth_call at this very limit succeeded
                    else:
                        limit = int(gas, 16) * (100 + GAS_MARGIN_PCT) // 100
                        size = len(payloads[r["id"]][1])
                        self._gas_hints[size] = max(limit, self._gas_hints.get(size, 0))
                    go.append((r, limit))
            except Exception as exc:  # noqa: BLE001 - this report stays as it is; the others go on
                results[r["id"]] = exc
        if not go:
            return
        max_fee, tip = self._fees(base=base, tip=tip)
        nonce = self._next_nonce(chain_nonce)
        signed: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for r, gas in go:
            try:
                signed.append((r, self._sign(r["id"], payloads[r["id"]], nonce, gas, max_fee, tip)))
            except FeeCapExceeded as exc:
                self._set(r["id"], error=str(exc))
                results[r["id"]] = exc
                continue
            nonce += 1
        if not signed:
            return
        stamp = now()
        with self.engine.begin() as conn:  # every transaction stored before any is broadcast
            conn.execute(tx_attempts.insert(), [attempt for _, attempt in signed])
            conn.execute(update(reports).where(reports.c.id == bindparam("row_id")).values(
                tx_hash=bindparam("tx"), updated_at=stamp, state=SENT, error=None),
                [{"row_id": r["id"], "tx": attempt["tx_hash"]} for r, attempt in signed])
        for r, attempt in signed:
            log.info("report sent", extra={"fields": {"agreement": r["address"], "period": r["period"],
                                                       "tx": attempt["tx_hash"], "nonce": attempt["nonce"]}})
            self.hook("sent_persisted", r)
        self._broadcast_many([attempt for _, attempt in signed])
        for r, _ in signed:
            self.count("reports_sent", r["agreement"])
            self.hook("broadcast", r)

    def _explain_revert(self, r: dict[str, Any], revert: RpcError, next_period: Any, config_hash: Any) -> None:
        """A signed report whose preflight reverted, with the contract's `nextPeriod` and
        `configHash` read since: settled elsewhere, waiting for an earlier period, signed under
        an oracle set the parties have since rotated (signed again), or a revert to record."""
        for a in (next_period, config_hash):
            if isinstance(a, RpcError):
                raise a
        next_period = int(next_period, 16)
        if next_period > r["period"]:
            self._settled_elsewhere(r, self._agreement(r))
        elif next_period < r["period"]:
            self._set(r["id"], error=f"waiting for period {next_period} to settle first")
        elif _unhex(config_hash) != keccak(_unhex(r["config"])):
            self._set(r["id"], CLOSED, signatures=None, error="oracle set changed on-chain; re-signing")
        else:
            self._preflight_failed(r, revert.revert_text())

    def track_many(self, rows: list[dict[str, Any]], results: dict[int, str | Exception], wait: bool = True) -> None:
        """sent -> mined (-> confirmed when deep enough) for many reports: every attempt's receipt
        and the head block in one batch. A report with no receipt yet takes `track`'s full path
        (replace, rebroadcast, fill nonce gaps, nonce taken). `wait=False`: one look, no polling,
        and a report with no receipt yet is left for a later call."""
        with self.engine.connect() as conn:
            found = conn.execute(select(tx_attempts).where(
                tx_attempts.c.report_id.in_([r["id"] for r in rows]), tx_attempts.c.status != "dropped").order_by(
                tx_attempts.c.id.desc())).mappings().all()
        by_row: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
        for a in found:
            by_row[a["report_id"]].append(dict(a))
        flat = [a for r in rows for a in by_row[r["id"]]]
        receipts: dict[str, dict[str, Any]] = {}
        head = quiet = 0
        me = self.sender.address.lower()
        for poll in range(RECEIPT_POLLS if wait else 1):
            # just broadcast: the node may still be mining them; poll again while receipts come in
            missing = [a for a in flat if a["tx_hash"] not in receipts and not any(
                b["tx_hash"] in receipts for b in by_row[a["report_id"]])]
            if poll and (not missing or quiet >= RECEIPT_QUIET_POLLS):
                break
            if poll:
                time.sleep(RECEIPT_POLL_S)
            # only a transaction whose nonce the chain has used can have a receipt: the sender's
            # mined nonce count is asked first, receipts only for those below it (and for any
            # attempt from another sender, which this count says nothing about)
            used = int(self.rpc.call("eth_getTransactionCount", [self.sender.address, "latest"]), 16)
            ask = [a for a in missing if a["nonce"] < used or str(a["sender"]).lower() != me]
            if not ask:
                quiet += 1
                continue
            head, raw = self._head_and_receipts([a["tx_hash"] for a in ask])
            got = {a["tx_hash"]: _receipt_of(rc) for a, rc in zip(ask, raw) if rc}
            quiet = 0 if got else quiet + 1
            receipts |= got
        unmined = [r for r in rows if not any(a["tx_hash"] in receipts for a in by_row[r["id"]])]
        if not wait:
            waiting = {r["id"] for r in unmined}
        else:
            waiting = self._still_pending(unmined, by_row) if unmined else set()
        mined: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = []
        for r in rows:
            try:
                hit = next(((a, receipts[a["tx_hash"]]) for a in by_row[r["id"]] if a["tx_hash"] in receipts), None)
                if hit is None:
                    if r["id"] not in waiting:
                        self.track(r)
                elif hit[1]["status"] != 1:
                    self._on_mined(r, *hit)
                else:
                    mined.append((r, *hit))
            except Exception as exc:  # noqa: BLE001 - this report stays as it is; the others go on
                results[r["id"]] = exc
        if mined:
            self._mined_many(mined, head)

    def _still_pending(self, rows: list[dict[str, Any]], by_row: dict[int, list[dict[str, Any]]]) -> set[int]:
        """The reports (ids) whose transaction simply waits for a block: our nonce is not used
        yet, every nonce below it is at the node, one of its attempts is in the node's pool,
        and it is not yet due for a fee bump. One JSON-RPC batch for all; the others take
        `track`'s full path (replace, rebroadcast, fill gaps, nonce taken). With a chain that
        mines every few seconds, this is every report of a pass that just broadcast."""
        me = self.sender.address
        flat = [a for r in rows for a in by_row[r["id"]]]
        answers = self.rpc.batch([("eth_getTransactionCount", [me, "latest"]),
                                  ("eth_getTransactionCount", [me, "pending"])]
                                 + [("eth_getTransactionByHash", [a["tx_hash"]]) for a in flat])
        if any(isinstance(a, RpcError) for a in answers[:2]):
            return set()
        latest, pending = int(answers[0], 16), int(answers[1], 16)
        known = {a["tx_hash"] for a, tx in zip(flat, answers[2:]) if tx and not isinstance(tx, RpcError)}
        out = set()
        for r in rows:
            attempts = by_row[r["id"]]
            if not attempts:
                continue
            newest = attempts[0]
            if (latest <= newest["nonce"] <= pending and any(a["tx_hash"] in known for a in attempts)
                    and self.clock() - newest["sent_at"] < self.policy.replace_after):
                out.add(r["id"])
        return out

    @staticmethod
    def _record_attempts(conn: Any, mined: list[tuple[dict[str, Any], dict[str, Any], int]], status: str) -> None:
        """Each (report row, attempt, block): the mined attempt gets `status`; other attempts at
        its nonce were replaced by it (two statements, each executed for all)."""
        conn.execute(update(tx_attempts).where(
            tx_attempts.c.report_id == bindparam("row_id"), tx_attempts.c.nonce == bindparam("at_nonce"),
            tx_attempts.c.tx_hash != bindparam("tx")).values(status="replaced"),
            [{"row_id": r["id"], "at_nonce": a["nonce"], "tx": a["tx_hash"]} for r, a, _ in mined])
        conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == bindparam("tx")).values(
            status=status, block_number=bindparam("block")),
            [{"tx": a["tx_hash"], "block": block} for _, a, block in mined])

    def _mined_many(self, mined: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]],
                    head: int | None) -> None:
        """Successful receipts: attempts and reports in one database transaction; `confirmed`
        at once when `head` shows them deep enough (None: not looked at, `mined`)."""
        stamp = now()
        with self.engine.begin() as conn:
            self._record_attempts(conn, [(r, a, rc["blockNumber"]) for r, a, rc in mined], "mined")
            conn.execute(update(reports).where(reports.c.id == bindparam("row_id")).values(
                state=bindparam("new_state"), tx_hash=bindparam("tx"), block_number=bindparam("block"),
                error=None, updated_at=stamp), [{
                    "row_id": r["id"], "tx": a["tx_hash"], "block": rc["blockNumber"],
                    "new_state": CONFIRMED if head is not None and head - rc["blockNumber"] + 1
                    >= self.policy.confirmations else MINED} for r, a, rc in mined])
        for r, attempt, receipt in mined:
            self.count("reports_mined", r["agreement"])
            fields = {"agreement": r["address"], "period": r["period"], "tx": attempt["tx_hash"],
                      "block": receipt["blockNumber"]}
            log.info("report mined", extra={"fields": fields})
            if head is not None and head - receipt["blockNumber"] + 1 >= self.policy.confirmations:
                self.count("reports_confirmed", r["agreement"])
                log.info("report confirmed", extra={"fields": fields | {"depth": head - receipt["blockNumber"] + 1}})

    def _head_and_receipts(self, tx_hashes: list[str]) -> tuple[int, list[Any]]:
        """The head block number and each transaction's raw receipt (None if unknown), one batch."""
        answers = self.rpc.batch([("eth_blockNumber", [])] + [("eth_getTransactionReceipt", [h]) for h in tx_hashes])
        for a in answers:
            if isinstance(a, RpcError):
                raise a
        return int(answers[0], 16), answers[1:]

    def confirm_many(self, rows: list[dict[str, Any]], results: dict[int, str | Exception]) -> None:
        """mined -> confirmed for many reports (receipts and head in one batch); a vanished
        receipt (reorg) takes `confirm`'s path back to sent."""
        head, raw = self._head_and_receipts([r["tx_hash"] for r in rows])
        deep: list[tuple[dict[str, Any], int]] = []
        for r, rc in zip(rows, raw):
            try:
                if not rc:
                    self.confirm(r)
                elif head - int(rc["blockNumber"], 16) + 1 >= self.policy.confirmations:
                    deep.append((r, int(rc["blockNumber"], 16)))
            except Exception as exc:  # noqa: BLE001
                results[r["id"]] = exc
        if not deep:
            return
        stamp = now()
        with self.engine.begin() as conn:
            for r, block in deep:
                conn.execute(update(reports).where(reports.c.id == r["id"]).values(
                    state=CONFIRMED, block_number=block, updated_at=stamp))
        for r, block in deep:
            self.count("reports_confirmed", r["agreement"])
            log.info("report confirmed", extra={"fields": {"agreement": r["address"], "period": r["period"],
                                                            "tx": r["tx_hash"], "depth": head - block + 1}})

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
            time.sleep(0.1)  # a node may count the nonce a moment before it serves the receipt
            if self._check_receipts(row, attempts):
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

    def _call(self, row: dict[str, Any]) -> tuple[str, str]:
        """(to, calldata) of the report's `submitReport` transaction."""
        return row["address"], encode_call("Agreement", "submitReport", _unhex(row["config"]), row["period"],
                                           _unhex(row["terms_hash"]), _unhex(row["evidence_root"]),
                                           _unhex(row["attainments"]), _unhex(row["signatures"]))

    def _preflight_failed(self, row: dict[str, Any], error: str) -> None:
        name = error.split("(", 1)[0]
        if name == "PeriodAlreadySettled":
            self._settled_elsewhere(row, self._agreement(row))
        elif name in RETRYABLE:
            self._set(row["id"], error=error)
            self.count("preflight_waits", row["agreement"])
        else:
            self._set(row["id"], FAILED, error=error)
            self.count("reports_failed", row["agreement"])
            log.error("report rejected by the contract", extra={"fields": {
                "agreement": row["address"], "period": row["period"], "error": error}})

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
            ours = conn.execute(select(tx_attempts.c.nonce).where(
                tx_attempts.c.sender == self.sender.address, tx_attempts.c.status == "pending")).scalars().all()
        return max([chain] + [n + 1 for n in ours])

    def _store_attempt(self, report_id: int | None, call: Any, nonce: int, gas: int, max_fee: int,
                       tip: int, report_values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sign the transaction and write it (and the report's new state) in one database
        transaction, before anything is broadcast."""
        attempt = self._sign(report_id, call, nonce, gas, max_fee, tip)
        with self.engine.begin() as conn:
            conn.execute(tx_attempts.insert().values(**attempt))
            if report_id is not None:
                conn.execute(update(reports).where(reports.c.id == report_id).values(
                    tx_hash=attempt["tx_hash"], updated_at=now(), **(report_values or {})))
        return attempt

    def _sign(self, report_id: int | None, call: Any, nonce: int, gas: int, max_fee: int, tip: int,
              ) -> dict[str, Any]:
        """Sign locally (a contract call, raw calldata to `to`, or a 0-value self-transfer)."""
        if self.policy.max_fee_wei is not None and max_fee > self.policy.max_fee_wei:
            raise FeeCapExceeded(max_fee, self.policy.max_fee_wei)
        to, data = (self.sender.address, b"") if call is None else (call[0], _unhex(call[1]))
        raw, tx_hash = self._signer.sign_eip1559(self.chain_id, nonce, gas, max_fee, tip, to, 0, data)
        return {"report_id": report_id, "sender": self.sender.address, "nonce": nonce, "gas": gas,
                "tx_hash": _hex(tx_hash), "raw": _hex(raw), "max_fee": str(max_fee),
                "priority_fee": str(tip), "status": "pending", "sent_at": int(self.clock())}

    def _broadcast(self, attempt: dict[str, Any]) -> None:
        self._broadcast_many([attempt])

    def _broadcast_many(self, attempts: list[dict[str, Any]]) -> None:
        """eth_sendRawTransaction for each stored attempt, in one batch (in nonce order)."""
        answers = self.rpc.batch([("eth_sendRawTransaction", [a["raw"]]) for a in attempts])
        for attempt, answer in zip(attempts, answers):
            if isinstance(answer, RpcError):
                self._refused(attempt, answer)

    def _refused(self, attempt: dict[str, Any], exc: Exception) -> None:
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
            attempt = self._store_attempt(row["id"], self._call(row), old["nonce"],
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
        if receipt["status"] == 1:
            self._mined_many([(row, attempt, receipt)], head=None)
            return
        with self.engine.begin() as conn:
            self._record_attempts(conn, [(row, attempt, receipt["blockNumber"])], "reverted")
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
        with self.engine.connect() as conn:  # every attempt, also those given up as dropped
            ours = set(conn.execute(select(tx_attempts.c.tx_hash).where(
                tx_attempts.c.report_id == row["id"])).scalars())
        if tx_hash in ours:
            # our own transaction after all (state lost between broadcast and write, or the node
            # counted its nonce before it served its receipt and we took it for another's)
            with self.engine.begin() as conn:
                conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == tx_hash).values(
                    status="mined", block_number=ev["blockNumber"], error=None))
            self._set(row["id"], MINED, tx_hash=tx_hash, block_number=ev["blockNumber"], error=None)
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


def _receipt_of(raw: dict[str, Any]) -> dict[str, Any]:
    """The fields of a JSON receipt the outbox reads, as integers."""
    return {"status": int(raw.get("status") or "0x0", 16), "blockNumber": int(raw["blockNumber"], 16),
            "transactionHash": raw.get("transactionHash")}


class FeeCapExceeded(RuntimeError):
    def __init__(self, fee: int, cap: int) -> None:
        super().__init__(f"fee {fee} wei would exceed max_fee_wei {cap}; not sending")


def _revert_text(exc: Exception) -> str:
    data = getattr(exc, "data", None)
    if isinstance(data, (str, bytes)) and data and data not in ("0x", b""):
        return decode_error(data)
    return str(exc) or type(exc).__name__

