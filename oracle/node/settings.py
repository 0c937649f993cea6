"""The oracle node's settings: one object, read once from a TOML or YAML file and `SLACOMP_ORACLE_*`
environment variables (env wins). Holds no secret: keystores are files, their password comes from
an environment variable or a file named here."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml
from eth_account.signers.local import LocalAccount

from oracle.chain.keystore import KeyRing, KeystoreError, load_keystore, read_password
from oracle.core.terms import TermsError, parse_duration

ENV_PREFIX = "SLACOMP_ORACLE_"
CLOCKS = ("system", "chain")


class SettingsError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"oracle settings: {key}: {message}")
        self.key, self.message = key, message


@dataclass(frozen=True)
class AgreementSpec:
    """One agreement the node serves. The Config (schedule, oracle set) is always read from the
    chain; the terms file must hash to its termsHash."""

    address: str
    terms: Path
    inbox: Path | None = None  # folder scanned for devices/events/exclusions/tickets .csv/.jsonl
    id: str = ""  # key of its rows in the database (default: the address)
    keys: tuple[str, ...] = ()  # local oracle addresses that sign for it (default: every local oracle key)

    @property
    def key(self) -> str:
        return self.id or self.address.lower()


@dataclass(frozen=True)
class Settings:
    rpc_url: str = "http://127.0.0.1:8545"
    db_url: str = "sqlite:///oracle.db"
    data_dir: Path = Path("oracle-data")  # evidence bundles: data_dir/bundles
    keystores: tuple[Path, ...] = ()
    password_env: str = "SLACOMP_KEYSTORE_PASSWORD"
    password_file: Path | None = None
    submitter_keystore: Path | None = None  # pays gas; default: the first keystore
    grace: int = 86_400  # seconds after a period's end before it is closed (late telemetry)
    confirmations: int = 2
    poll_interval: float = 15.0
    replace_after: int = 180  # seconds a sent transaction may stay unmined before a fee bump
    fee_bump_pct: int = 25  # >= 10 (nodes refuse smaller replacement bumps)
    priority_fee_wei: int | None = None  # default: the node's eth_maxPriorityFeePerGas
    max_fee_wei: int | None = None  # refuse to bid above this
    listen: str = "127.0.0.1:9464"  # /metrics, /healthz and /v1/signatures; "" disables
    peers: tuple[str, ...] = ()  # other oracle nodes' base URLs, polled for signatures
    from_block: int = 0  # where to look for AgreementConfigured / OracleSetChanged
    # "system": periods fall due (end + grace) by this machine's clock; "chain": by the chain's,
    # the latest block's time (a development chain whose time was set or moved, e.g. Anvil --timestamp)
    clock: str = "system"
    agreements: tuple[AgreementSpec, ...] = field(default_factory=tuple)

    def bundle_store(self) -> Path:
        return self.data_dir / "bundles"

    def agreement(self, key: str) -> AgreementSpec:
        for a in self.agreements:
            if key in (a.key, a.address, a.address.lower(), a.id):
                return a
        raise SettingsError("agreements", f"no agreement {key!r} (have {', '.join(a.key for a in self.agreements)})")


_DURATIONS = {"grace", "replace_after"}
_INTS = {"confirmations", "fee_bump_pct", "priority_fee_wei", "max_fee_wei", "from_block"}
_PATHS = {"data_dir", "password_file", "submitter_keystore"}


def _coerce(name: str, value: Any, base: Path) -> Any:
    if value is None or value == "":
        return None if name in _PATHS or name in ("priority_fee_wei", "max_fee_wei") else value
    try:
        if name in _DURATIONS:
            return parse_duration(value, name)
        if name in _INTS:
            return int(value)
        if name == "poll_interval":
            return float(value)
    except (TermsError, ValueError) as exc:
        raise SettingsError(name, str(exc)) from None
    if name in _PATHS:
        return _path(value, base)
    if name == "keystores":
        items = value.split(",") if isinstance(value, str) else value
        return tuple(_path(v, base) for v in items if str(v).strip())
    if name == "peers":
        items = value.split(",") if isinstance(value, str) else value
        return tuple(str(v).strip().rstrip("/") for v in items if str(v).strip())
    return str(value)


def _path(value: Any, base: Path) -> Path:
    p = Path(os.path.expanduser(str(value).strip()))
    return p if p.is_absolute() else base / p


def _agreement(item: Any, i: int, base: Path) -> AgreementSpec:
    if not isinstance(item, dict) or "address" not in item or "terms" not in item:
        raise SettingsError(f"agreements[{i}]", "needs at least `address` and `terms`")
    unknown = set(item) - {"address", "terms", "inbox", "id", "keys"}
    if unknown:
        raise SettingsError(f"agreements[{i}]", f"unknown keys {sorted(unknown)}")
    return AgreementSpec(
        address=str(item["address"]), terms=_path(item["terms"], base),
        inbox=_path(item["inbox"], base) if item.get("inbox") else None,
        id=str(item.get("id", "")), keys=tuple(str(k) for k in item.get("keys", ())))


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from `path` (TOML or YAML; optional), then `SLACOMP_ORACLE_<NAME>` variables, then
    `overrides`. Relative paths in the file are relative to the file."""
    env = dict(os.environ) if env is None else env
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        text = p.read_text()
        data = tomllib.loads(text) if p.suffix == ".toml" else (yaml.safe_load(text) or {})
        if not isinstance(data, dict):
            raise SettingsError(str(p), "must be a mapping")
        base = p.resolve().parent
    names = {f.name for f in fields(Settings)}
    unknown = set(data) - names
    if unknown:
        raise SettingsError(", ".join(sorted(unknown)), "unknown setting")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name == "agreements":
            values[name] = tuple(_agreement(item, i, base) for i, item in enumerate(value or []))
        else:
            values[name] = _coerce(name, value, base)
    for name in names - {"agreements"}:
        if ENV_PREFIX + name.upper() in env:
            values[name] = _coerce(name, env[ENV_PREFIX + name.upper()], Path.cwd())
    values.update(overrides)
    settings = replace(Settings(), **values)
    if settings.fee_bump_pct < 10:
        raise SettingsError("fee_bump_pct", "must be at least 10 (nodes refuse smaller replacement bumps)")
    if settings.confirmations < 1:
        raise SettingsError("confirmations", "must be at least 1")
    if settings.clock not in CLOCKS:
        raise SettingsError("clock", f"{settings.clock!r} is not one of {', '.join(CLOCKS)}")
    return settings


def load_keys(settings: Settings, keyring: KeyRing | None, submitter: LocalAccount | None,
              ) -> tuple[KeyRing, LocalAccount]:
    """The oracle keys and the submitter's account (from the keystores, unless given)."""
    if keyring is not None and submitter is not None:
        return keyring, submitter
    password = read_password(settings.password_env, settings.password_file) if (
        settings.keystores or settings.submitter_keystore) else ""
    if keyring is None:
        keyring = KeyRing.from_files(settings.keystores, password)
    if submitter is None:
        path = settings.submitter_keystore or (settings.keystores[0] if settings.keystores else None)
        if path is None:
            raise KeystoreError("no keystore configured for the submitter")
        submitter = load_keystore(path, password)
    return keyring, submitter
