"""The oracle service on a real Anvil with real keystores and a real SQLite file: happy path,
crashes at each outbox step (SIGKILL), periods settled by someone else, stuck transactions,
node restarts, reverts, SIGTERM, and two nodes exchanging signatures (2-of-3)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import select

from oracle.chain import devchain
from oracle.chain.report import report_from_result
from oracle.chain.signing import sign_for
from oracle.core.terms import load_terms
from oracle.engine.kpi import compute_period
from oracle.engine.replay import recompute
from oracle.evidence.bundle import bundle_path, find_bundle, load_bundle
from oracle.evidence.load import load_evidence
from oracle.node.loop import Service
from oracle.node.states import ReportState
from oracle.store import db
from tests.e2e.helpers import EXAMPLE
from tests.oracle_service.conftest import ORACLE_KEYS, ROOT, deploy_agreement, settings_from, start_chain, write_config

CLOSED, SIGNED, SENT = ReportState.CLOSED, ReportState.SIGNED, ReportState.SENT
CONFIRMED, SETTLED_ELSEWHERE = ReportState.CONFIRMED, ReportState.SETTLED_ELSEWHERE

HERE = Path(__file__).resolve().parent
TERMS = load_terms(EXAMPLE / "terms.yaml")
OCTOBER = compute_period(TERMS, load_evidence(EXAMPLE / "evidence", TERMS), "2026-10")
CREDIT = OCTOBER.total_credit  # 2,750 USDC


def settlements(dep) -> list:
    return dep.agreement.events.ReportAccepted().get_logs(from_block=0)


def nonce_of(dep, key: bytes) -> int:
    return dep.w3.eth.get_transaction_count(Account.from_key(key).address, "pending")


def report_row(service: Service, period: int = 0) -> dict:
    return next(r for r in service.status()[0]["reports"] if r["period"] == period)


def attempts(service: Service) -> list[dict]:
    with service.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(db.tx_attempts).order_by(db.tx_attempts.c.id)).mappings()]


def automine(dep, on: bool) -> None:
    dep.w3.provider.make_request("evm_setAutomine", [on])


def mine(dep, blocks: int = 1) -> None:
    for _ in range(blocks):
        dep.w3.provider.make_request("evm_mine", [])


def crash_at(config: Path, point: str) -> None:
    proc = subprocess.run([sys.executable, str(HERE / "crashnode.py"), str(config), point], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def assert_settled_once(dep, service: Service) -> None:
    logs = settlements(dep)
    assert len(logs) == 1 and logs[0]["args"]["period"] == 0
    assert logs[0]["args"]["evidenceRoot"] == bytes.fromhex(OCTOBER.evidence_root[2:])
    assert dep.token.functions.balanceOf(dep.customer).call() == CREDIT
    row = report_row(service)
    assert row["state"] == CONFIRMED and row["tx_hash"] == "0x" + logs[0]["transactionHash"].hex().removeprefix("0x")


def test_service_settles_a_due_period_with_the_engine_numbers(deployed, keystores, tmp_path):
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0",
                       confirmations=2)
    service = Service(settings_from(cfg))
    service.tick()
    assert report_row(service)["state"] == "mined"  # 1 block deep; 2 confirmations wanted
    mine(deployed)
    service.tick()
    assert_settled_once(deployed, service)
    assert [r["period"] for r in service.status()[0]["reports"]] == [0]  # November is not due yet
    # the auditor's way back: the root on-chain -> the bundle -> the same numbers
    bundle = load_bundle(find_bundle(service.settings.bundle_store(), OCTOBER.evidence_root))
    assert recompute(bundle).attainments() == OCTOBER.attainments()
    text = service.metrics.registry.get_sample_value
    assert text("slacomp_oracle_reports_submitted_total", {"agreement": service.status()[0]["agreement"]}) == 1
    assert text("slacomp_oracle_settlement_lag_seconds", {"agreement": service.status()[0]["agreement"]}) == 0
    service.tick()  # nothing more to do, nothing resent
    assert len(settlements(deployed)) == 1 and nonce_of(deployed, keystores["submitter_keys"][0]) == 1
    service.close()


@pytest.mark.parametrize("point", ["closed", "signed", "sent_persisted"])
def test_crash_before_broadcast_then_restart_settles_once(deployed, keystores, tmp_path, point):
    """Killed after the report is closed (bundle frozen, not signed), after it is signed (nothing
    sent) or after the signed transaction is stored but before it reached the node: the restart
    sends exactly one transaction (for sent_persisted: the very bytes stored before the crash).
    The kill after the broadcast is the next test (it needs the transaction left unmined)."""
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
    crash_at(cfg, point)
    assert settlements(deployed) == [] and nonce_of(deployed, keystores["submitter_keys"][0]) == 0
    service = Service(settings_from(cfg))
    stored = attempts(service)
    assert report_row(service)["state"] == {"closed": CLOSED, "signed": SIGNED, "sent_persisted": SENT}[point]
    service.tick()
    service.tick()
    assert_settled_once(deployed, service)
    assert nonce_of(deployed, keystores["submitter_keys"][0]) == 1
    if point == "sent_persisted":
        assert [a["tx_hash"] for a in attempts(service)] == [stored[0]["tx_hash"]]
    service.close()


def test_crash_after_broadcast_before_mined_is_tracked_not_resent(deployed, keystores, tmp_path):
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
    automine(deployed, False)
    try:
        crash_at(cfg, "broadcast")
        service = Service(settings_from(cfg))
        assert report_row(service)["state"] == SENT
        service.tick()  # pending in the mempool: tracked, not resent
        assert len(attempts(service)) == 1 and nonce_of(deployed, keystores["submitter_keys"][0]) == 1
        mine(deployed)
    finally:
        automine(deployed, True)
    service.tick()
    assert_settled_once(deployed, service)
    service.close()


def test_period_settled_by_someone_else_is_never_resent(deployed, keystores, tmp_path, anvil):
    report = report_from_result(OCTOBER, 0)
    sigs = sign_for(report, deployed.config, deployed.w3.eth.chain_id, deployed.agreement.address, ORACLE_KEYS[1:])
    other = deployed.w3.eth.accounts[5]
    deployed.agreement.functions.submitReport(deployed.config.encoded(), 0, report.terms_hash, report.evidence_root,
                                              report.packed_attainments, sigs).transact({"from": other})
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
    service = Service(settings_from(cfg))
    service.tick()
    row = report_row(service)
    assert row["state"] == SETTLED_ELSEWHERE and row["error"] is None  # same evidence root as ours
    assert row["tx_hash"] == "0x" + settlements(deployed)[0]["transactionHash"].hex().removeprefix("0x")
    assert nonce_of(deployed, keystores["submitter_keys"][0]) == 0 and attempts(service) == []
    service.close()


def test_oracle_set_rotated_after_signing_is_caught_by_the_preflight_and_signed_again(deployed, keystores,
                                                                                     tmp_path):
    """Signed under the old oracle set; the parties then rotate it (oracle 2 out, a new one in).
    The preflight reverts (ConfigMismatch), the report goes back to be signed under the new
    Config, and only then is one transaction sent."""
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
    service = Service(settings_from(cfg))
    service.tick(submit=False)
    assert report_row(service)["state"] == SIGNED
    newcomer = Account.from_key(b"\x07" * 32).address
    rotated = deployed.config.with_oracles([Account.from_key(k).address for k in ORACLE_KEYS[:2]] + [newcomer], 2)
    assert rotated.oracles != deployed.config.oracles  # the indexes the signatures carry change too
    ag, vendor = deployed.agreement, deployed.w3.eth.accounts[0]
    ag.functions.proposeOracleSet(rotated.oracle_set()).transact({"from": vendor})
    ag.functions.acceptOracleSet(deployed.config.encoded(), rotated.encoded()).transact({"from": deployed.customer})
    seen: list[str] = []
    service.hook = lambda point, row: seen.append(point)
    service.tick()
    service.tick()
    assert_settled_once(deployed, service)
    assert "signed" in seen  # signed again, under the rotated Config
    with service.engine.connect() as conn:
        assert conn.execute(select(db.reports.c.config)).scalar() == "0x" + rotated.encoded().hex()
    assert len(attempts(service)) == 1  # nothing was broadcast under the old Config
    service.close()


def test_stuck_transaction_is_replaced_at_the_same_nonce(deployed, keystores, tmp_path):
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0",
                       replace_after="5m", priority_fee_wei=10**9)
    now = [deployed.w3.eth.get_block("latest")["timestamp"]]
    service = Service(settings_from(cfg), clock=lambda: now[0])
    automine(deployed, False)
    try:
        service.tick()
        first = attempts(service)
        assert len(first) == 1 and report_row(service)["state"] == SENT
        service.tick()  # not stuck for long enough yet
        assert len(attempts(service)) == 1
        now[0] += 301
        service.tick()
        both = attempts(service)
        assert len(both) == 2 and both[0]["nonce"] == both[1]["nonce"] == 0
        assert int(both[1]["max_fee"]) > int(both[0]["max_fee"]) and both[0]["status"] == "replaced"
        mine(deployed)
    finally:
        automine(deployed, True)
    service.tick()
    assert_settled_once(deployed, service)
    assert report_row(service)["tx_hash"] == both[1]["tx_hash"]
    assert deployed.w3.eth.get_transaction_count(Account.from_key(keystores["submitter_keys"][0]).address) == 1
    service.close()


def test_revert_is_recorded_with_the_decoded_custom_error(keystores, tmp_path):
    """The node's clock says November is over (plus grace) but the chain's does not yet:
    the preflight revert is recorded by name and the report waits; once the chain passes the
    period's end it settles. (A chain of its own: it moves that chain's time on.)"""
    with start_chain() as chain:
        deployed = deploy_agreement(chain.w3(), chain.url)
        end_nov = deployed.config.period_bounds[2]
        now = [end_nov + 7200]
        cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
        service = Service(settings_from(cfg), clock=lambda: now[0])
        service.tick()
        assert report_row(service, 0)["state"] == CONFIRMED
        row = report_row(service, 1)
        assert row["state"] == SIGNED and row["error"] == f"PeriodNotEnded(1, {end_nov})"
        deployed.w3.provider.make_request("evm_mine", [end_nov + 1])
        service.tick()
        assert report_row(service, 1)["state"] == CONFIRMED and len(settlements(deployed)) == 2
        service.close()


def test_mined_revert_decoded_when_another_submitter_wins_the_race(deployed, keystores, tmp_path):
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0",
                       priority_fee_wei=10**9)
    service = Service(settings_from(cfg))
    report = report_from_result(OCTOBER, 0)
    sigs = sign_for(report, deployed.config, deployed.w3.eth.chain_id, deployed.agreement.address, ORACLE_KEYS[1:])
    automine(deployed, False)
    try:
        service.tick()
        assert report_row(service)["state"] == SENT
        base = deployed.w3.eth.get_block("latest")["baseFeePerGas"]
        deployed.agreement.functions.submitReport(
            deployed.config.encoded(), 0, report.terms_hash, report.evidence_root, report.packed_attainments, sigs,
        ).transact({"from": deployed.w3.eth.accounts[6], "gas": 400_000, "maxPriorityFeePerGas": 50 * 10**9,
                    "maxFeePerGas": 2 * base + 50 * 10**9})
        mine(deployed)
    finally:
        automine(deployed, True)
    service.tick()
    row = report_row(service)
    assert row["state"] == SETTLED_ELSEWHERE and row["error"] == "PeriodAlreadySettled(0)"
    ours = attempts(service)[0]
    assert ours["status"] == "reverted" and ours["error"] == "PeriodAlreadySettled(0)"
    assert len(settlements(deployed)) == 1
    service.close()


def test_node_restart_loses_the_pending_transaction_and_it_is_rebroadcast(keystores, tmp_path):
    port = devchain._free_port()
    state = tmp_path / "anvil"
    state.mkdir()
    chain = start_chain(port=port, state_dir=state)
    try:
        dep = deploy_agreement(chain.w3(), chain.url)
        cfg = write_config(tmp_path, dep, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
        service = Service(settings_from(cfg))
        automine(dep, False)
        service.tick()
        sent = attempts(service)
        assert report_row(service)["state"] == SENT
        sent_at = dep.w3.eth.get_block("latest")["timestamp"]
        chain.stop()  # dumps the chain state; the mempool is gone
        service.tick()  # node down: logged and counted, the loop goes on
        key = service.status()[0]["agreement"]
        assert service.metrics.registry.get_sample_value(
            "slacomp_oracle_failures_total", {"agreement": key, "kind": "ConnectionError"}) == 1
        chain = start_chain(port=port, state_dir=state, timestamp=sent_at + 1)  # the chain's time goes on
        assert dep.agreement.functions.nextPeriod().call() == 0  # state came back, tx did not
        service.tick()
        service.tick()
        assert_settled_once(dep, service)
        assert [a["tx_hash"] for a in attempts(service)] == [sent[0]["tx_hash"]]  # the same transaction
        assert service.metrics.registry.get_sample_value(
            "slacomp_oracle_events_total", {"agreement": key, "event": "rebroadcasts"}) == 1
        service.close()
    finally:
        chain.stop()


def test_sigterm_stops_the_service_gracefully(deployed, keystores, tmp_path):
    port = devchain._free_port()
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0",
                       listen=f"127.0.0.1:{port}")
    proc = subprocess.Popen([sys.executable, "-m", "slacomp.cli", "oracle", "run", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        metrics = ""
        while time.monotonic() < deadline:
            try:
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if "slacomp_oracle_reports_confirmed_total" in metrics and len(settlements(deployed)) == 1:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert len(settlements(deployed)) == 1
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert logs[-1]["msg"] == "oracle stopped" and any(entry["msg"] == "report sent" for entry in logs)
    assert "slacomp_oracle_reports_submitted_total" in metrics
    assert all(k.hex() not in err for k in ORACLE_KEYS + keystores["submitter_keys"])  # no key material in logs


def test_two_nodes_exchange_signatures_to_reach_two_of_three(deployed, keystores, tmp_path):
    pa, pb = devchain._free_port(), devchain._free_port()
    cfg_a = write_config(tmp_path, deployed, keystores, keys=["oracle0"], submitter="submitter0", name="a",
                         listen=f"127.0.0.1:{pa}", peers=[f"http://127.0.0.1:{pb}"])
    cfg_b = write_config(tmp_path, deployed, keystores, keys=["oracle1"], submitter="submitter1", name="b",
                         listen=f"127.0.0.1:{pb}", peers=[f"http://127.0.0.1:{pa}"])
    a, b = Service(settings_from(cfg_a)), Service(settings_from(cfg_b))
    a.start_http()
    b.start_http()
    try:
        a.tick()  # A signs; B has nothing yet
        assert report_row(a)["state"] == "closed" and report_row(a)["error"] == "1 of 2 signatures collected"
        b.tick()  # B signs, pulls A's signature over the same digest, submits
        assert report_row(b)["state"] == CONFIRMED
        a.tick()  # A sees the period settled with the root it computed itself
        assert report_row(a)["state"] == SETTLED_ELSEWHERE and report_row(a)["error"] is None
        assert len(settlements(deployed)) == 1
        assert deployed.token.functions.balanceOf(deployed.customer).call() == CREDIT
        assert nonce_of(deployed, keystores["submitter_keys"][0]) == 0
    finally:
        a.close()
        b.close()


def test_a_peer_with_different_evidence_does_not_count(deployed, keystores, tmp_path):
    inbox = tmp_path / "short"
    inbox.mkdir()
    for name in ("devices.csv", "events.csv"):  # no exclusions: a different report
        (inbox / name).write_bytes((EXAMPLE / "evidence" / name).read_bytes())
    pa, pb = devchain._free_port(), devchain._free_port()
    cfg_a = write_config(tmp_path, deployed, keystores, keys=["oracle0"], submitter="submitter0", name="a",
                         listen=f"127.0.0.1:{pa}", peers=[f"http://127.0.0.1:{pb}"])
    cfg_b = write_config(tmp_path, deployed, keystores, keys=["oracle1"], submitter="submitter1", name="b",
                         listen=f"127.0.0.1:{pb}", peers=[f"http://127.0.0.1:{pa}"], inbox=inbox)
    a, b = Service(settings_from(cfg_a)), Service(settings_from(cfg_b))
    a.start_http()
    b.start_http()
    try:
        a.tick()
        b.tick()
        a.tick()
        assert report_row(a)["state"] == report_row(b)["state"] == "closed"
        assert report_row(a)["evidence_root"] != report_row(b)["evidence_root"]
        assert settlements(deployed) == []
    finally:
        a.close()
        b.close()


def _raw_transfer(dep, key: bytes, nonce: int, tip: int) -> bytes:
    acct = Account.from_key(key)
    base = dep.w3.eth.get_block("latest")["baseFeePerGas"]
    tx = {"to": acct.address, "value": 0, "gas": 21_000, "nonce": nonce, "chainId": dep.w3.eth.chain_id,
          "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip}
    return dep.w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)


def test_nonce_taken_by_another_transaction_is_resent_at_a_new_nonce(deployed, keystores, tmp_path):
    """Someone used the submitter key at our pending nonce with a higher fee: our transaction can
    never be mined; the outbox notices the nonce is gone and sends the report again, once."""
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0",
                       priority_fee_wei=10**9)
    service = Service(settings_from(cfg))
    automine(deployed, False)
    try:
        service.tick()
        assert attempts(service)[0]["nonce"] == 0
        _raw_transfer(deployed, keystores["submitter_keys"][0], 0, 100 * 10**9)
        mine(deployed)
        service.tick()  # nonce 0 is gone: resend at nonce 1
        tried = attempts(service)
        assert [(a["nonce"], a["status"]) for a in tried] == [(0, "dropped"), (1, "pending")]
        mine(deployed)
    finally:
        automine(deployed, True)
    service.tick()
    assert_settled_once(deployed, service)
    service.close()


def test_nonce_gap_below_our_transaction_is_filled(deployed, keystores, tmp_path):
    """A transaction of the submitter key at a lower nonce vanished from the mempool: ours is
    stuck behind the gap until the outbox fills it with a 0-value self-transfer."""
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
    service = Service(settings_from(cfg))
    automine(deployed, False)
    try:
        foreign = _raw_transfer(deployed, keystores["submitter_keys"][0], 0, 10**9)
        service.tick()
        assert attempts(service)[0]["nonce"] == 1
        deployed.w3.provider.make_request("anvil_dropTransaction", ["0x" + foreign.hex().removeprefix("0x")])
        service.tick()
        tried = attempts(service)
        assert [(a["nonce"], a["report_id"] is None) for a in tried] == [(1, False), (0, True)]
        mine(deployed)
    finally:
        automine(deployed, True)
    service.tick()
    assert_settled_once(deployed, service)
    service.close()


def test_service_on_postgresql(deployed, keystores, tmp_path, postgres_url):
    """The same service, outbox and ingest code with a PostgreSQL URL instead of a SQLite file."""
    from sqlalchemy import create_engine
    fresh = create_engine(postgres_url)
    db.metadata.drop_all(fresh)
    fresh.dispose()
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0",
                       db_url=postgres_url)
    service = Service(settings_from(cfg))
    assert service.engine.dialect.name == "postgresql"
    service.tick()
    service.tick()
    assert_settled_once(deployed, service)
    service.close()


def test_cli_ingest_close_submit_status(deployed, keystores, tmp_path):
    from tests.oracle_service.conftest import run_node
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0",
                       inbox=tmp_path / "empty-inbox")
    bad = tmp_path / "events-bad.csv"
    bad.write_text("ts,device_id,state\n2026-10-01T00:00:00Z,N1,available\nnope,N1,available\n")
    files = [str(EXAMPLE / "evidence" / "devices.csv"), str(bad)]
    out = run_node(cfg, "ingest", "--agreement", deployed.agreement.address, *files)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert [(r["kind"], r["accepted"], r["quarantined"]) for r in results] == [("devices", 7, 0), ("events", 1, 1)]
    assert results[1]["problems"][0]["line"] == 3
    out = run_node(cfg, "close")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)[0]
    assert status["quarantined"] == 1 and status["reports"][0]["state"] == SIGNED  # closed and signed, not sent
    assert settlements(deployed) == []
    out = run_node(cfg, "submit", "--agreement", deployed.agreement.address)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["reports"][0]["state"] == "confirmed" and len(settlements(deployed)) == 1
    out = run_node(cfg, "submit", "--agreement", "nope")
    assert out.returncode == 2 and "does not serve agreement" in out.stderr
    out = run_node(cfg, "ingest", "--agreement", "nope", files[0])
    assert out.returncode == 2 and "does not serve agreement" in out.stderr


# ------------------------------------------------------------------ many agreements per tick (batched outbox)


def _many(tmp_path, keystores, anvil, n: int, **extra) -> tuple[list, Path]:
    """n agreements on the module's Anvil served by one node (each with the example evidence)."""
    import shutil

    deps = [deploy_agreement(anvil.w3(), anvil.url) for _ in range(n)]
    cfg = write_config(tmp_path, deps[0], keystores, keys=["oracle0", "oracle1"], submitter="submitter0", **extra)
    lines = []
    for i, dep in enumerate(deps[1:], 1):
        inbox = tmp_path / f"inbox{i}"
        shutil.copytree(EXAMPLE / "evidence", inbox)
        lines += ["", "[[agreements]]", f'address = "{dep.agreement.address}"', f'terms = "{dep.terms_path}"',
                  f'inbox = "{inbox}"']
    cfg.write_text(cfg.read_text() + "\n".join(lines) + "\n")
    return deps, cfg


def _states(service: Service) -> list[str]:
    return [a["reports"][0]["state"] if a["reports"] else None for a in service.status()]


@pytest.mark.parametrize("workers", [0, 1])
def test_many_agreements_are_broadcast_in_one_batch_then_confirmed(keystores, tmp_path, anvil, workers):
    """One tick closes and signs every agreement's report, stores every transaction (consecutive
    nonces) before broadcasting them together; receipts are collected in one pass. With a
    worker process (workers=1) the ingest and close run there and give the same reports."""
    deps, cfg = _many(tmp_path, keystores, anvil, 3)
    service = Service(settings_from(cfg), workers=workers)
    automine(deps[0], False)
    try:
        service.tick()
        tried = attempts(service)
        assert sorted(a["nonce"] for a in tried) == [0, 1, 2] and _states(service) == [SENT] * 3
        assert all(a["status"] == "pending" for a in tried)
        mine(deps[0])
    finally:
        automine(deps[0], True)
    service.tick()
    assert _states(service) == [CONFIRMED] * 3
    for dep in deps:
        logs = settlements(dep)
        assert len(logs) == 1 and logs[0]["args"]["evidenceRoot"] == bytes.fromhex(OCTOBER.evidence_root[2:])
    assert nonce_of(deps[0], keystores["submitter_keys"][0]) == 3 and len(attempts(service)) == 3
    service.tick()  # nothing more to do, nothing resent
    assert nonce_of(deps[0], keystores["submitter_keys"][0]) == 3
    service.close()


def test_receipts_are_asked_for_only_below_the_mined_nonce_and_state_is_read_once(keystores, tmp_path, anvil):
    """A pass reads each report's on-chain state once (configHash, nextPeriod): its preflight is
    the only other call before sending. Receipts are asked for only for transactions below the
    sender's mined nonce count: none while no block has come, then each exactly once."""
    n = 4
    deps, cfg = _many(tmp_path, keystores, anvil, n)
    service = Service(settings_from(cfg), workers=0)
    calls: list[tuple[str, list]] = []
    batch = service.outbox.rpc._batch

    def counted(requests):
        calls.extend(requests)
        return batch(requests)

    service.outbox.rpc._batch = counted
    automine(deps[0], False)
    try:
        service.tick()
        assert _states(service) == [SENT] * n
        reads = [p[0]["data"][:10] for m, p in calls if m == "eth_call" and "from" not in p[0]]
        assert len(reads) == 2 * n  # the pass's snapshot only: no second read before sending
        assert [m for m, _ in calls if m == "eth_getTransactionReceipt"] == []  # nothing mined yet
        mine(deps[0])
    finally:
        automine(deps[0], True)
    calls.clear()
    service.tick()
    assert _states(service) == [CONFIRMED] * n
    receipts = [p[0] for m, p in calls if m == "eth_getTransactionReceipt"]
    assert sorted(receipts) == sorted(a["tx_hash"] for a in attempts(service))  # each once
    service.close()


def test_chunks_are_pipelined_and_the_last_waits_for_every_carried_report(keystores, tmp_path, anvil, monkeypatch):
    """With one agreement a chunk, a chunk does not wait for its transaction to be mined: its
    report is carried to the next chunk's outbox step, and the last chunk waits for all. Each
    agreement is reported done once, and every report is confirmed when the pass ends."""
    from oracle.node import loop as service_mod

    monkeypatch.setattr(service_mod, "CHUNK", 1)
    monkeypatch.setattr(service_mod, "TAIL_CHUNK", 1)
    n = 3
    deps, cfg = _many(tmp_path, keystores, anvil, n)
    service = Service(settings_from(cfg), workers=0)
    steps: list[tuple[int, bool]] = []
    step_many = service.outbox.step_many

    def recorded(row_ids, wait=True):
        steps.append((len(row_ids), wait))
        return step_many(row_ids, wait=wait)

    service.outbox.step_many = recorded
    done: list[str] = []
    automine(deps[0], False)  # nothing is mined until the last chunk has waited
    try:
        service.tick(progress=done.append)
        chunks = len(service_mod._chunks(n))
        assert chunks >= 2 and [wait for _, wait in steps] == [False] * (chunks - 1) + [True]
        assert steps[-1][0] == n  # every earlier chunk's report was carried to the last step
        assert sorted(done) == sorted(a["agreement"] for a in service.status())  # once each
        assert _states(service) == [SENT] * n
        mine(deps[0])
    finally:
        automine(deps[0], True)
    service.tick()
    assert _states(service) == [CONFIRMED] * n
    for dep in deps:
        assert len(settlements(dep)) == 1
    assert nonce_of(deps[0], keystores["submitter_keys"][0]) == n and len(attempts(service)) == n
    service.close()


def test_worker_bundles_are_synced_once_before_their_reports_are_stored(keystores, tmp_path, anvil, monkeypatch):
    """Bundles written by worker processes skip their fsyncs; the node makes them durable with
    one syncfs of the store before the reports that name them are stored, and each is whole."""
    from oracle.evidence import bundle as bundle_mod
    from oracle.node import close as close_mod

    if not bundle_mod.CAN_DEFER_SYNC:
        pytest.skip("no syncfs here: workers fsync every bundle")
    deps, cfg = _many(tmp_path, keystores, anvil, 3)
    service = Service(settings_from(cfg), workers=1)
    calls = []

    def sync(store):
        with service.engine.connect() as conn:
            stored = conn.execute(select(db.reports)).all()
        calls.append((Path(store), len(stored), sorted(p.name for p in Path(store).iterdir())))
        bundle_mod.sync_store(store)

    monkeypatch.setattr(close_mod, "sync_store", sync)
    service.tick()
    assert _states(service) == [CONFIRMED] * 3
    [(store, reports_then, names)] = calls  # once, for the three, before any report was stored
    assert reports_then == 0 and store == service.settings.bundle_store()
    rows = [r for a in service.status() for r in a["reports"]]
    for r in rows:
        assert bundle_path(store, r["bundle_id"]).name in names
        loaded = load_bundle(bundle_path(store, r["bundle_id"]))
        assert recompute(loaded).evidence_root == OCTOBER.evidence_root
    service.close()


def test_transactions_waiting_for_a_block_are_checked_in_one_batch(keystores, tmp_path, anvil, monkeypatch):
    """On a chain that mines every few seconds, a pass finds its reports' transactions in the
    node's pool: one batch says so (nonce unused, no gap below, known, not due for a fee bump),
    and none takes the per-report path that replaces, rebroadcasts or fills gaps."""
    deps, cfg = _many(tmp_path, keystores, anvil, 3)
    service = Service(settings_from(cfg), workers=0)
    automine(deps[0], False)
    try:
        service.tick()
        assert _states(service) == [SENT] * 3
        full_path = []
        monkeypatch.setattr(service.outbox, "track", lambda row: full_path.append(row["id"]))
        service.tick()
        assert _states(service) == [SENT] * 3 and full_path == [] and len(attempts(service)) == 3
        monkeypatch.undo()
        mine(deps[0])
    finally:
        automine(deps[0], True)
    service.tick()
    assert _states(service) == [CONFIRMED] * 3
    assert nonce_of(deps[0], keystores["submitter_keys"][0]) == 3 and len(attempts(service)) == 3
    service.close()


@pytest.mark.parametrize("point", ["sent_persisted", "broadcast"])
def test_crash_inside_a_batch_then_restart_settles_each_once(keystores, tmp_path, anvil, point):
    """Killed once the batch's transactions are all stored (none broadcast yet), or once the
    batch was broadcast but before any receipt was read: the restart sends no new transaction;
    it rebroadcasts the stored bytes (or finds them pending) and settles each agreement once."""
    deps, cfg = _many(tmp_path, keystores, anvil, 2)
    automine(deps[0], False)
    try:
        crash_at(cfg, point)
        service = Service(settings_from(cfg))
        stored = attempts(service)
        assert _states(service) == [SENT, SENT] and sorted(a["nonce"] for a in stored) == [0, 1]
        service.tick()  # rebroadcast (sent_persisted) or tracked in the mempool (broadcast)
        assert len(attempts(service)) == 2
        mine(deps[0])
    finally:
        automine(deps[0], True)
    service.tick()
    assert _states(service) == [CONFIRMED, CONFIRMED]
    assert [a["tx_hash"] for a in attempts(service)] == [a["tx_hash"] for a in stored]
    assert all(len(settlements(dep)) == 1 for dep in deps)
    assert nonce_of(deps[0], keystores["submitter_keys"][0]) == 2
    service.close()


def test_gas_limit_reused_only_after_a_preflight_call_at_that_limit(deployed, keystores, tmp_path):
    """A gas limit measured for calls of one size is reused only when an eth_call at exactly
    that limit succeeds; a limit that is too low falls back to the node's estimate."""
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
    service = Service(settings_from(cfg))
    service.tick(submit=False)  # closed and signed, nothing sent
    with service.engine.connect() as conn:
        row = dict(conn.execute(select(db.reports)).mappings().one())
    assert row["state"] == SIGNED
    size = len(service.outbox._call(row)[1])
    service.outbox._gas_hints[size] = 30_000  # far too low for submitReport
    service.tick()
    assert_settled_once(deployed, service)
    (attempt,) = attempts(service)
    assert attempt["gas"] > 30_000 and service.outbox._gas_hints[size] == attempt["gas"]
    service.close()


def test_worker_exceptions_come_back_whole_or_by_name():
    """An exception a worker cannot send back as itself (its constructor takes other arguments
    than it pickles) comes back as a WorkerError with its class name: it would otherwise break
    the pool when its result is read."""
    import pickle

    from oracle.node.errors import WorkerError
    from oracle.node.workers import _portable

    class Odd(Exception):
        def __init__(self, field: str, reason: str) -> None:
            super().__init__(reason)

    plain = ValueError("bad row")
    assert _portable(plain) is plain
    odd = _portable(Odd("ts", "not a timestamp"))
    assert isinstance(odd, WorkerError) and odd.kind == "Odd" and str(odd) == "not a timestamp"
    again = pickle.loads(pickle.dumps(odd))
    assert again.kind == "Odd" and str(again) == "not a timestamp"


def test_a_dead_worker_process_is_replaced(keystores, tmp_path, anvil):
    import os

    deps, cfg = _many(tmp_path, keystores, anvil, 2)
    service = Service(settings_from(cfg), workers=1)
    service.start_workers()
    (pid,) = service.workers.pids()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    service.tick()  # a broken pool is replaced before the pass (or, found broken during it, after)
    if _states(service) != [CONFIRMED, CONFIRMED]:
        assert attempts(service) == []
        service.tick()
    assert _states(service) == [CONFIRMED, CONFIRMED] and len(attempts(service)) == 2
    assert service.workers.pool is not None and pid not in service.workers.pids()
    assert all(len(settlements(dep)) == 1 for dep in deps)
    service.close()
