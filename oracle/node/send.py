"""The outbox's send step: signed -> sent. Preflight every signed report on the latest state (one
JSON-RPC batch), tell why one would revert, sign each transaction with consecutive nonces and
store them all (one database transaction) before any is broadcast (one batch)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.crypto import keccak

from oracle.chain.abi import encode_call
from oracle.chain.tx import RpcError
from oracle.node.rows import Attempt, Row
from oracle.node.states import Move, ReportState, move_many
from oracle.node.tx import GAS_MARGIN_PCT, FeeCapExceeded, TxBase, _unhex, log
from oracle.store.db import tx_attempts

# Errors that say "not yet", not "never": the report stays signed and is retried.
RETRYABLE = ("PeriodNotEnded", "PeriodOutOfOrder")


@dataclass
class _Preflight:
    """One batch's answers: each report's gas (or its revert), the chain's fees and our nonce."""

    gases: list[Any]
    hints: dict[int, int]  # row index -> gas limit its preflight eth_call was made with
    retry: set[int]  # row indexes whose hinted eth_call failed (the node's estimate decided)
    base_fee: int
    chain_nonce: int
    tip: int | None


class Sending(TxBase):
    """The outbox's send step (signed -> sent), for one submitter account."""

    def submit_many(self, rows: list[Row], results: dict[int, str | Exception]) -> None:
        """signed -> sent for many reports: one JSON-RPC batch runs, for each, the preflight (the
        call itself on the latest state: it succeeds, so the transaction will, on that state),
        plus the base fee and our pending nonce. A report whose preflight reverts has the
        contract's `nextPeriod` and `configHash` read (one more batch) to tell why: settled
        elsewhere, waiting for an earlier period, the oracle set changed (sign again), or a
        revert to record. Then every transaction is signed here with consecutive nonces and
        stored, with its report's new state, in one database transaction; only then are they
        broadcast (one batch)."""
        payloads = {r["id"]: self._call(r) for r in rows}
        pre = self._preflight(rows, payloads)
        go = self._judge(rows, payloads, pre, results)
        if not go:
            return
        max_fee, tip = self._fees(base=pre.base_fee, tip=pre.tip)
        nonce = self._next_nonce(pre.chain_nonce)
        signed: list[tuple[Row, Attempt]] = []
        for r, gas in go:
            try:
                signed.append((r, self._sign(r["id"], payloads[r["id"]], nonce, gas, max_fee, tip)))
            except FeeCapExceeded as exc:
                self._note(r["id"], error=str(exc))
                results[r["id"]] = exc
                continue
            nonce += 1
        if signed:
            self._store_and_broadcast(signed)

    def _preflight(self, rows: list[Row], payloads: dict[int, tuple[str, str]]) -> _Preflight:
        """One batch: the head block, our pending nonce, the tip (unless set), and each report's
        preflight: with a gas limit already measured for calls of its size, an eth_call at that
        limit; else (or if that call fails in any way) the node's estimate."""
        me = self.sender.address
        calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", ["latest", False]),
                                              ("eth_getTransactionCount", [me, "pending"])]
        if self.policy.priority_fee_wei is None:
            calls.append(("eth_maxPriorityFeePerGas", []))
        head = len(calls)
        hints: dict[int, int] = {}
        for k, r in enumerate(rows):
            to, data = payloads[r["id"]]
            hint = self._gas_hints.get(len(data))
            if hint:
                hints[k] = hint
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
        return _Preflight(gases, hints, retry, int((answers[0] or {}).get("baseFeePerGas") or "0x0", 16),
                          int(answers[1], 16),
                          int(answers[2], 16) if self.policy.priority_fee_wei is None else None)

    def _judge(self, rows: list[Row], payloads: dict[int, tuple[str, str]], pre: _Preflight,
               results: dict[int, str | Exception]) -> list[tuple[Row, int]]:
        """The reports whose preflight passed, each with its gas limit; each that reverted has
        the contract's state read (one batch) and its revert explained."""
        why = [k for k, gas in enumerate(pre.gases) if isinstance(gas, RpcError) and gas.is_revert]
        state: dict[int, tuple[Any, Any]] = {}
        if why:
            more = self.rpc.batch([c for k in why for c in (
                ("eth_call", [{"to": payloads[rows[k]["id"]][0], "data": encode_call("Agreement", f)}, "latest"])
                for f in ("nextPeriod", "configHash"))])
            state = {k: (more[2 * j], more[2 * j + 1]) for j, k in enumerate(why)}
        go: list[tuple[Row, int]] = []
        for k, r in enumerate(rows):
            gas = pre.gases[k]
            try:
                if isinstance(gas, RpcError):
                    if not gas.is_revert:
                        raise gas
                    self._explain_revert(r, gas, *state[k])
                elif k in pre.hints and k not in pre.retry:
                    go.append((r, pre.hints[k]))  # the eth_call at this very limit succeeded
                else:
                    limit = int(gas, 16) * (100 + GAS_MARGIN_PCT) // 100
                    size = len(payloads[r["id"]][1])
                    self._gas_hints[size] = max(limit, self._gas_hints.get(size, 0))
                    go.append((r, limit))
            except Exception as exc:  # noqa: BLE001 - this report stays as it is; the others go on
                results[r["id"]] = exc
        return go

    def _store_and_broadcast(self, signed: list[tuple[Row, Attempt]]) -> None:
        """Every transaction stored, with its report's `sent`, before any is broadcast."""
        with self.engine.begin() as conn:
            conn.execute(tx_attempts.insert(), [attempt for _, attempt in signed])
            move_many(conn, [Move(r["id"], ReportState.SENT, {"tx_hash": attempt["tx_hash"], "error": None})
                             for r, attempt in signed])
        for r, attempt in signed:
            log.info("report sent", extra={"fields": {"agreement": r["address"], "period": r["period"],
                                                       "tx": attempt["tx_hash"], "nonce": attempt["nonce"]}})
            self.hook("sent_persisted", r)
        self._broadcast_many([attempt for _, attempt in signed])
        for r, _ in signed:
            self.count("reports_sent", r["agreement"])
            self.hook("broadcast", r)

    def _explain_revert(self, r: Row, revert: RpcError, next_period: Any, config_hash: Any) -> None:
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
            self._note(r["id"], error=f"waiting for period {next_period} to settle first")
        elif _unhex(config_hash) != keccak(_unhex(str(r["config"]))):
            self._move(r["id"], ReportState.CLOSED, signatures=None, error="oracle set changed on-chain; re-signing")
        else:
            self._preflight_failed(r, revert.revert_text())

    def _preflight_failed(self, row: Row, error: str) -> None:
        name = error.split("(", 1)[0]
        if name == "PeriodAlreadySettled":
            self._settled_elsewhere(row, self._agreement(row))
        elif name in RETRYABLE:
            self._note(row["id"], error=error)
            self.count("preflight_waits", row["agreement"])
        else:
            self._move(row["id"], ReportState.FAILED, error=error)
            self.count("reports_failed", row["agreement"])
            log.error("report rejected by the contract", extra={"fields": {
                "agreement": row["address"], "period": row["period"], "error": error}})

