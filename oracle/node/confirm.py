"""The outbox's confirm step: sent -> mined -> confirmed. Receipts (polled in batches while a
chain mines what was just broadcast), confirmations, reorgs (mined -> sent), and a transaction
that does not get mined: rebroadcast, replaced at the same nonce with a higher fee, nonce gaps
filled, its nonce taken by another transaction."""
from __future__ import annotations

import time
from typing import Any, cast

from eth_typing import HexStr
from sqlalchemy import bindparam, select, update
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound
from web3.types import RPCEndpoint

from oracle.chain.abi import decode_error
from oracle.chain.tx import RpcError
from oracle.node.rows import Attempt, Row
from oracle.node.states import Move, ReportState, move_many
from oracle.node.tx import FILLER_GAS, FeeCapExceeded, TxBase, log
from oracle.store.db import tx_attempts

# after a batch broadcast the node may still be mining: the sender's mined nonce count is polled
# (every 20 ms) and the receipts of the transactions below it asked for, until 10 polls in a row
# bring none (or 200 polls)
RECEIPT_POLLS = 200
RECEIPT_POLL_S = 0.02
RECEIPT_QUIET_POLLS = 10
Receipt = dict[str, Any]  # status, blockNumber (as integers), transactionHash


class Confirming(TxBase):
    """The outbox's confirm step (sent -> mined -> confirmed), for one submitter account."""

    def track_many(self, rows: list[Row], results: dict[int, str | Exception], wait: bool = True) -> None:
        """sent -> mined (-> confirmed when deep enough) for many reports: every attempt's receipt
        and the head block in one batch. A report with no receipt yet takes `track`'s full path
        (replace, rebroadcast, fill nonce gaps, nonce taken). `wait=False`: one look, no polling,
        and a report with no receipt yet is left for a later call."""
        with self.engine.connect() as conn:
            found = conn.execute(select(tx_attempts).where(
                tx_attempts.c.report_id.in_([r["id"] for r in rows]), tx_attempts.c.status != "dropped").order_by(
                tx_attempts.c.id.desc())).mappings().all()
        by_row: dict[int | None, list[Attempt]] = {r["id"]: [] for r in rows}
        for a in found:
            by_row[a["report_id"]].append(cast(Attempt, dict(a)))
        flat = [a for r in rows for a in by_row[r["id"]]]
        receipts: dict[str, Receipt] = {}
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
        mined: list[tuple[Row, Attempt, Receipt]] = []
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

    def _still_pending(self, rows: list[Row], by_row: dict[int | None, list[Attempt]]) -> set[int]:
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
    def _record_attempts(conn: Any, mined: list[tuple[Row, Attempt, int]], status: str) -> None:
        """Each (report row, attempt, block): the mined attempt gets `status`; other attempts at
        its nonce were replaced by it (two statements, each executed for all)."""
        conn.execute(update(tx_attempts).where(
            tx_attempts.c.report_id == bindparam("row_id"), tx_attempts.c.nonce == bindparam("at_nonce"),
            tx_attempts.c.tx_hash != bindparam("tx")).values(status="replaced"),
            [{"row_id": r["id"], "at_nonce": a["nonce"], "tx": a["tx_hash"]} for r, a, _ in mined])
        conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == bindparam("tx")).values(
            status=status, block_number=bindparam("block")),
            [{"tx": a["tx_hash"], "block": block} for _, a, block in mined])

    def _mined_many(self, mined: list[tuple[Row, Attempt, Receipt]],
                    head: int | None) -> None:
        """Successful receipts: attempts and reports in one database transaction; `confirmed`
        at once when `head` shows them deep enough (None: not looked at, `mined`)."""
        with self.engine.begin() as conn:
            self._record_attempts(conn, [(r, a, rc["blockNumber"]) for r, a, rc in mined], "mined")
            move_many(conn, [Move(r["id"], ReportState.CONFIRMED if head is not None and head - rc["blockNumber"] + 1
                                  >= self.policy.confirmations else ReportState.MINED,
                                  {"tx_hash": a["tx_hash"], "block_number": rc["blockNumber"], "error": None})
                             for r, a, rc in mined])
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

    def confirm_many(self, rows: list[Row], results: dict[int, str | Exception]) -> None:
        """mined -> confirmed for many reports (receipts and head in one batch); a vanished
        receipt (reorg) takes `confirm`'s path back to sent."""
        head, raw = self._head_and_receipts([str(r["tx_hash"]) for r in rows])
        deep: list[tuple[Row, int]] = []
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
        with self.engine.begin() as conn:
            move_many(conn, [Move(r["id"], ReportState.CONFIRMED, {"block_number": block}) for r, block in deep])
        for r, block in deep:
            self.count("reports_confirmed", r["agreement"])
            log.info("report confirmed", extra={"fields": {"agreement": r["address"], "period": r["period"],
                                                            "tx": r["tx_hash"], "depth": head - block + 1}})

    def track(self, row: Row) -> None:
        """sent -> mined (or replaced, rebroadcast, settled elsewhere)."""
        attempts = self._attempts(row["id"])
        if not attempts:  # crashed between writing the state and the attempt: cannot happen (one txn)
            self._move(row["id"], ReportState.SIGNED)
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
                self._move(row["id"], ReportState.SIGNED,
                           error=f"nonce {nonce} was taken by another transaction; resending")
                self.count("nonce_conflicts", row["agreement"])
            return
        # a lower nonce that is neither mined nor pending would block ours forever
        self._fill_gaps(nonce)
        if not any(self._known(a["tx_hash"]) for a in attempts):
            # dropped from the mempool (node restart, eviction): rebroadcast the same bytes
            log.warning("rebroadcasting", extra={"fields": {"tx": newest["tx_hash"], "nonce": nonce}})
            self._broadcast_many([newest])
            self.count("rebroadcasts", row["agreement"])
            return
        if self.clock() - newest["sent_at"] >= self.policy.replace_after:
            self._replace(row, newest)

    def confirm(self, row: Row) -> None:
        """mined -> confirmed after N blocks (or back to sent if the block was reorganised away)."""
        receipt = self._receipt(str(row["tx_hash"]))
        if receipt is None:
            with self.engine.begin() as conn:
                conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == row["tx_hash"]).values(
                    status="pending", block_number=None))
            self._move(row["id"], ReportState.SENT, block_number=None,
                       error="receipt vanished (reorg); tracking again")
            return
        depth = self.w3.eth.block_number - receipt["blockNumber"] + 1
        if depth >= self.policy.confirmations:
            self._move(row["id"], ReportState.CONFIRMED, block_number=receipt["blockNumber"])
            self.count("reports_confirmed", row["agreement"])
            log.info("report confirmed", extra={"fields": {"agreement": row["address"], "period": row["period"],
                                                            "tx": row["tx_hash"], "depth": depth}})

    def _replace(self, row: Row, old: Attempt) -> None:
        """Same nonce, higher fees: whichever of the two is mined settles the period once."""
        max_fee, tip = self._fees(floor=(int(old["max_fee"]), int(old["priority_fee"])))
        try:
            attempt = self._store_attempt(row["id"], self._call(row), old["nonce"],
                                          old["gas"], max_fee, tip)
        except FeeCapExceeded as exc:
            self._note(row["id"], error=str(exc))
            return
        with self.engine.begin() as conn:
            conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == old["tx_hash"]).values(status="replaced"))
        log.warning("replacing stuck transaction", extra={"fields": {
            "old": old["tx_hash"], "new": attempt["tx_hash"], "nonce": old["nonce"], "max_fee": max_fee}})
        self._broadcast_many([attempt])
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
                self._broadcast_many([cast(Attempt, dict(held[k]._mapping))])
                continue
            max_fee, tip = self._fees()
            filler = self._store_attempt(None, None, k, FILLER_GAS, max_fee, tip)
            log.warning("filling nonce gap", extra={"fields": {"nonce": k, "tx": filler["tx_hash"]}})
            self._broadcast_many([filler])

    def _receipt(self, tx_hash: str) -> Any:
        try:
            return self.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        except TransactionNotFound:
            return None

    def _known(self, tx_hash: str) -> bool:
        try:
            return self.w3.eth.get_transaction(HexStr(tx_hash)) is not None
        except TransactionNotFound:
            return False

    def _check_receipts(self, row: Row, attempts: list[Attempt]) -> bool:
        for attempt in attempts:
            receipt = self._receipt(attempt["tx_hash"])
            if receipt is not None:
                self._on_mined(row, attempt, receipt)
                return True
        return False

    def _on_mined(self, row: Row, attempt: Attempt, receipt: Any) -> None:
        if receipt["status"] == 1:
            self._mined_many([(row, attempt, receipt)], head=None)
            return
        with self.engine.begin() as conn:
            self._record_attempts(conn, [(row, attempt, receipt["blockNumber"])], "reverted")
        error = self.revert_reason(attempt["tx_hash"], receipt)
        with self.engine.begin() as conn:
            conn.execute(update(tx_attempts).where(tx_attempts.c.tx_hash == attempt["tx_hash"]).values(error=error))
        self._note(row["id"], error=error)
        log.error("report transaction reverted", extra={"fields": {
            "agreement": row["address"], "period": row["period"], "tx": attempt["tx_hash"], "error": error}})
        if error.startswith("PeriodAlreadySettled"):
            self._settled_elsewhere(self._row(row["id"]), self._agreement(row), keep_error=True)
        else:
            self._move(row["id"], ReportState.FAILED, tx_hash=attempt["tx_hash"], block_number=receipt["blockNumber"])
            self.count("reports_failed", row["agreement"])

    def revert_reason(self, tx_hash: str, receipt: Any) -> str:
        """The decoded custom error of a mined, reverted transaction: from the node's call trace,
        else by replaying the call at the block it was mined in."""
        try:
            trace = self.w3.provider.make_request(RPCEndpoint("debug_traceTransaction"),
                                                  [tx_hash, {"tracer": "callTracer"}])
            output = (trace.get("result") or {}).get("output")
            if output and output != "0x":
                return decode_error(output)
        except Exception:  # noqa: BLE001 - node without debug_*: fall back to a replay
            pass
        tx = self.w3.eth.get_transaction(HexStr(tx_hash))
        try:
            self.w3.eth.call({"from": tx["from"], "to": tx["to"], "data": tx["input"], "gas": tx["gas"]},
                             receipt["blockNumber"])
        except (ContractCustomError, ContractLogicError) as exc:
            return _revert_text(exc)
        return "reverted (reason unavailable)"


def _receipt_of(raw: dict[str, Any]) -> Receipt:
    """The fields of a JSON receipt the outbox reads, as integers."""
    return {"status": int(raw.get("status") or "0x0", 16), "blockNumber": int(raw["blockNumber"], 16),
            "transactionHash": raw.get("transactionHash")}


def _revert_text(exc: Exception) -> str:
    data = getattr(exc, "data", None)
    if isinstance(data, (str, bytes)) and data and data not in ("0x", b""):
        return decode_error(data)
    return str(exc) or type(exc).__name__

