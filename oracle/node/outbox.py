"""The durable outbox: moves a signed report to the chain exactly once.

States (column `reports.state`, `oracle.node.states.ReportState`), each written before the step
that follows it, and every transition `states.TRANSITIONS` allows:

    closed ─▶ signed ─▶ sent ─▶ mined ─▶ confirmed      settled by us
    signed ─▶ closed                                    the oracle set rotated on-chain: sign again
    sent   ─▶ signed                                    its nonce was taken (or no attempt stored): resend
    mined  ─▶ sent                                      its receipt vanished (reorg): track again
    sent   ─▶ confirmed                                 already deep enough when its receipt is read
    closed, signed, sent ─▶ mined                       the settling transaction was ours after all
    closed, signed, sent ─▶ settled_elsewhere           another submitter was first
    signed, sent ─▶ failed                              reverted with a decoded custom error

Every transaction is signed and stored (`tx_attempts`: nonce, hash, raw bytes, fees) *before* it
is broadcast, so a restart rebroadcasts the same bytes or replaces them at the same nonce with a
higher fee; it never builds a second transaction for a nonce it cannot account for. Before
anything is sent, and whenever it is unsure, the outbox asks the contract (`nextPeriod`,
`ReportAccepted` logs): a period settled on-chain is never sent again. The contract itself
settles a period at most once; the outbox makes sure it is settled at least once, with no
duplicate transaction. The steps: `send` (signed -> sent), `confirm` (sent -> mined -> confirmed),
their shared plumbing in `tx`."""
from __future__ import annotations

from oracle.node.confirm import Confirming
from oracle.node.rows import Row
from oracle.node.send import Sending
from oracle.node.states import FINAL, ReportState
from oracle.node.tx import FeeCapExceeded, Hook, TxPolicy

__all__ = ["FeeCapExceeded", "Hook", "Outbox", "TxPolicy"]


class Outbox(Sending, Confirming):
    """Sends and tracks report transactions from one submitter account."""

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
        rows: dict[int, Row] = self._rows(row_ids)
        todo = list(rows.values())
        for _ in range(4):
            if not todo:
                break
            before = {r["id"]: r["state"] for r in todo}
            signed = [r for r in todo if r["state"] == ReportState.SIGNED]
            sent = [r for r in todo if r["state"] == ReportState.SENT]
            mined = [r for r in todo if r["state"] == ReportState.MINED]
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
