"""Fixtures for the oracle service tests: a real Anvil, real keystore files, a real SQLite file,
a freshly created agreement per test (escrowed in a USDC-like token) and a settings file."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak
from sqlalchemy import create_engine
from web3 import Web3

from oracle.chain import devchain
from oracle.chain.config import config_from_terms
from oracle.chain.keystore import create_keystore, load_keystore
from oracle.chain.tx import create_agreement, deploy, deploy_factory, deposit, transact
from oracle.core.terms import load_terms
from oracle.node.settings import Settings, load_settings
from oracle.store import db
from tests.e2e.helpers import EXAMPLE

PASSWORD = "correct horse battery staple"
ORACLE_KEYS = [keccak(text=f"slacomp test oracle {i}") for i in range(3)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keystores(tmp_path_factory) -> dict[str, Any]:
    """Encrypted keystores (pbkdf2 with few iterations: fast, still the real format): the three
    agreement oracles, and fresh submitter keys for each test (so nonces start at 0)."""
    d = tmp_path_factory.mktemp("keys")
    out: dict[str, Any] = {}
    for i, k in enumerate(ORACLE_KEYS):
        create_keystore(d / f"oracle{i}.json", k, PASSWORD, kdf="pbkdf2", iterations=16)
        out[f"oracle{i}"] = d / f"oracle{i}.json"
    out["submitter_keys"] = [os.urandom(32) for _ in range(2)]
    for i, k in enumerate(out["submitter_keys"]):
        create_keystore(d / f"submitter{i}.json", k, PASSWORD, kdf="pbkdf2", iterations=16)
        out[f"submitter{i}"] = d / f"submitter{i}.json"
    (d / "password").write_text(PASSWORD + "\n")
    out["password"] = d / "password"
    return out


# The chain's time when a test chain starts: mid-November 2026, so October (the example's first
# period) is due and November is not, whatever today's date. Nodes take the chain's clock.
CHAIN_START = 1_794_700_800  # 2026-11-15T00:00:00Z


def start_chain(**kw: Any) -> devchain.DevChain:
    return devchain.start("anvil", timestamp=kw.pop("timestamp", CHAIN_START), **kw)


@pytest.fixture(scope="module")
def anvil():
    with start_chain() as chain:
        yield chain


@dataclass
class Deployed:
    w3: Web3
    url: str
    agreement: Any
    token: Any
    customer: str
    config: Any
    terms_path: Path


def fund(w3: Web3, address: str, wei: int = 10**20) -> None:
    w3.provider.make_request("anvil_setBalance", [address, hex(wei)])


def deploy_agreement(w3: Web3, url: str, threshold: int = 2, customer_index: int = 1) -> Deployed:
    vendor = w3.eth.accounts[0]
    customer = w3.eth.accounts[customer_index]
    terms_path = EXAMPLE / "terms.yaml"
    terms = load_terms(terms_path)
    token = deploy(w3, "TestToken", vendor, "Test USD Coin", "USDC", 6)
    oracles = [Account.from_key(k).address for k in ORACLE_KEYS]
    config = config_from_terms(terms, customer=customer, asset=token.address, oracles=oracles, threshold=threshold)
    agreement, _ = create_agreement(w3, deploy_factory(w3, vendor), vendor, config, customer=customer)
    escrow = config.max_credit_per_period() * config.period_count
    transact(w3, token.functions.mint(vendor, escrow), vendor, "mint")
    deposit(w3, agreement, vendor, escrow)
    return Deployed(w3, url, agreement, token, customer, config, terms_path)


@pytest.fixture
def deployed(anvil) -> Deployed:
    return deploy_agreement(anvil.w3(), anvil.url)


def write_config(tmp: Path, dep: Deployed, keystores: dict[str, Path], *, keys: list[str], submitter: str,
                 name: str = "node", inbox: Path | None = None, listen: str = "", **extra: Any) -> Path:
    """A TOML settings file for one node; returns its path."""
    fund(dep.w3, load_keystore(keystores[submitter], PASSWORD).address)
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    if inbox is None:
        inbox = folder / "inbox"
        shutil.copytree(EXAMPLE / "evidence", inbox)
    values = {"rpc_url": dep.url, "db_url": f"sqlite:///{folder / 'oracle.db'}", "data_dir": str(folder / "data"),
              "keystores": [str(keystores[k]) for k in keys], "submitter_keystore": str(keystores[submitter]),
              "password_file": str(keystores["password"]), "grace": "1h", "confirmations": 1,
              "poll_interval": 0.2, "listen": listen, "clock": "chain"} | extra
    lines = []
    for k, v in values.items():
        lines.append(f"{k} = {_toml(v)}")
    lines += ["", "[[agreements]]", f'address = "{dep.agreement.address}"', f'terms = "{dep.terms_path}"',
              f'inbox = "{inbox}"']
    path = folder / "oracle.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def settings_from(path: Path, **overrides: Any) -> Settings:
    return load_settings(path, env={}, **overrides)


def run_node(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`slacomp oracle ...` in a subprocess (the CLI as users run it)."""
    return subprocess.run([sys.executable, "-m", "slacomp.cli", "oracle", *args, "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """The same code on a SQLite file and on PostgreSQL (skipped where no server can be had)."""
    if request.param == "sqlite":
        engine = db.connect(f"sqlite:///{tmp_path / 'oracle.db'}")
    else:
        fresh = create_engine(request.getfixturevalue("postgres_url"))
        db.metadata.drop_all(fresh)
        fresh.dispose()
        engine = db.connect(request.getfixturevalue("postgres_url"))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A PostgreSQL URL: $SLACOMP_TEST_POSTGRES_URL, or a throwaway cluster started here when the
    server binaries are installed (run as the `postgres` user when we are root); else skip."""
    url = os.environ.get("SLACOMP_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    pytest.importorskip("psycopg")
    if not PG_BIN:
        pytest.skip("no PostgreSQL server binaries")
    bin_dir = PG_BIN[-1]
    data = Path(tempfile.mkdtemp(prefix="slacomp-pg-"))  # pytest's tmp dirs are not reachable by `postgres`
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
        os.chmod(data, 0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = devchain._free_port()
    subprocess.run(as_user + [str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "slacomp"],
                   check=True, capture_output=True)
    subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                              "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://slacomp@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
