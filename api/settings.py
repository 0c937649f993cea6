"""The API's settings: one object, read once from `SLACOMP_*` environment variables. It reads the
same names as the oracle node (`SLACOMP_ORACLE_RPC_URL`, `..._DB_URL`, `..._DATA_DIR`) as fallbacks,
so an API beside an oracle node sees the same chain, database and evidence bundles."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


def _first(env: dict[str, str], *names: str, default: str = "") -> str:
    for name in names:
        if env.get(name, "").strip():
            return env[name].strip()
    return default


@dataclass(frozen=True)
class ApiSettings:
    rpc_url: str = "http://127.0.0.1:8545"
    db_url: str = "sqlite:///oracle.db"
    data_dir: Path = Path("oracle-data")  # bundles in data_dir/bundles, registered terms in data_dir/terms
    keys_file: Path | None = None  # API keys (hashed): JSON or YAML, see api/auth.py
    oracle_config: Path | None = None  # an oracle node's settings file: its agreements' ids and terms
    factories: tuple[str, ...] = ()  # factories whose AgreementCreated logs list agreements (empty: any)
    from_block: int = 0
    block_poll_s: float = 0.5  # how often the latest block number is re-read (cache invalidation)
    status_ttl_s: int = 60  # month-to-date "now" is rounded down to this many seconds
    rpc_timeout_s: float = 5.0
    max_body_bytes: int = 5_000_000  # ingest: larger bodies get 413
    max_batch_rows: int = 10_000  # ingest: more rows get 413
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bundle_store(self) -> Path:
        return self.data_dir / "bundles"

    @property
    def terms_store(self) -> Path:
        return self.data_dir / "terms"


def load_api_settings(env: dict[str, str] | None = None, **overrides: Any) -> ApiSettings:
    """Settings from the environment (`SLACOMP_API_*`, then the shared `SLACOMP_*` and the oracle's
    `SLACOMP_ORACLE_*` names), then `overrides`."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {
        "rpc_url": _first(env, "SLACOMP_API_RPC_URL", "SLACOMP_RPC_URL", "SLACOMP_ORACLE_RPC_URL",
                          default=ApiSettings.rpc_url),
        "db_url": _first(env, "SLACOMP_API_DB_URL", "SLACOMP_DB_URL", "SLACOMP_ORACLE_DB_URL",
                         default=ApiSettings.db_url),
        "data_dir": Path(_first(env, "SLACOMP_API_DATA_DIR", "SLACOMP_DATA_DIR", "SLACOMP_ORACLE_DATA_DIR",
                                default=str(ApiSettings.data_dir))),
    }
    if keys := _first(env, "SLACOMP_API_KEYS_FILE"):
        values["keys_file"] = Path(keys)
    if config := _first(env, "SLACOMP_API_ORACLE_CONFIG"):
        values["oracle_config"] = Path(config)
    if factories := _first(env, "SLACOMP_API_FACTORIES", "SLACOMP_FACTORY"):
        values["factories"] = tuple(f.strip() for f in factories.split(",") if f.strip())
    for name, cast in (("from_block", int), ("block_poll_s", float), ("status_ttl_s", int),
                       ("rpc_timeout_s", float), ("max_body_bytes", int), ("max_batch_rows", int)):
        if raw := _first(env, f"SLACOMP_API_{name.upper()}"):
            values[name] = cast(raw)
    values.update(overrides)
    return replace(ApiSettings(), **values)
