"""API keys and roles. A key is a random token shown once; the keys file stores only its SHA-256
(a 256-bit random token needs no slow hash), with the role and the on-chain party it acts for:

    keys:
      - {id: acme-ops, role: vendor, party: "0xVendor...", sha256: "<hex>", keystore: vendor.json}
      - {id: city-fm, role: customer, party: "0xCustomer...", sha256: "<hex>"}
      - {id: kpmg, role: auditor, sha256: "<hex>"}

Roles: `vendor` reads and writes its own agreements (where it is the on-chain vendor); `customer`
reads its own (where it is the on-chain customer); `auditor` reads every agreement and evidence
bundle. Every write, allowed or refused, is audit-logged (table `api_audit`)."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from eth_utils.address import is_address, to_checksum_address
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Engine

ROLES = ("vendor", "customer", "auditor")
log = logging.getLogger("slacomp.api.audit")

audit_metadata = MetaData()
api_audit = Table(
    "api_audit", audit_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", BigInteger, nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("agreement", String(42)),
    Column("status", Integer, nullable=False),
    Column("detail", Text, nullable=False),
)


class KeysError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, role and the address it acts for (None for auditors)."""

    key_id: str
    role: str
    party: str | None = None
    keystore: Path | None = None

    def may_read(self, vendor: str, customer: str) -> bool:
        if self.role == "auditor":
            return True
        if self.role == "vendor":
            return self.party == vendor
        return self.party == customer

    def may_write(self, vendor: str) -> bool:
        return self.role == "vendor" and self.party == vendor


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_key() -> str:
    return "slk_" + secrets.token_urlsafe(32)


class ApiKeys:
    """The keys of a keys file, looked up by the hash of the presented token."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self._by_hash: dict[str, Principal] = {}
        for i, r in enumerate(records):
            where = f"keys[{i}]"
            role = r.get("role")
            if role not in ROLES:
                raise KeysError(f"{where}.role: {role!r} is not one of {', '.join(ROLES)}")
            digest = str(r.get("sha256", "")).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise KeysError(f"{where}.sha256: not a hex SHA-256")
            party = r.get("party")
            if role != "auditor":
                if not isinstance(party, str) or not is_address(party):
                    raise KeysError(f"{where}.party: a {role} key needs the address it acts for")
                party = to_checksum_address(party)
            keystore = Path(r["keystore"]) if r.get("keystore") else None
            self._by_hash[digest] = Principal(str(r.get("id", f"key{i}")), role, party if role != "auditor" else None,
                                              keystore)

    @classmethod
    def from_file(cls, path: Path | None) -> ApiKeys:
        if path is None or not path.exists():
            return cls([])
        data = yaml.safe_load(path.read_text()) or {}
        records = data.get("keys", []) if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise KeysError(f"{path}: expected a list of keys under `keys`")
        base = path.resolve().parent
        for r in records:
            if isinstance(r, dict) and r.get("keystore") and not Path(r["keystore"]).is_absolute():
                r["keystore"] = str(base / r["keystore"])
        return cls(records)

    def lookup(self, token: str) -> Principal | None:
        digest = hash_key(token)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None


def add_key(path: Path, role: str, party: str | None, key_id: str) -> str:
    """Create a key, append its hashed record to the keys file, return the plaintext (shown once)."""
    if role not in ROLES:
        raise KeysError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role != "auditor" and (party is None or not is_address(party)):
        raise KeysError(f"a {role} key needs the address it acts for")
    data: dict[str, Any] = {"keys": []}
    if path.exists():
        data = yaml.safe_load(path.read_text()) or {"keys": []}
        if not isinstance(data, dict) or set(data) - {"keys"}:
            raise KeysError(f"{path} is not an API keys file (expected only a `keys` list)")
    token = new_key()
    record: dict[str, Any] = {"id": key_id, "role": role, "sha256": hash_key(token)}
    if role != "auditor":
        assert party is not None  # checked above
        record["party"] = to_checksum_address(party)
    data.setdefault("keys", []).append(record)
    ApiKeys(data["keys"])  # validate before writing
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n") if path.suffix == ".json" else \
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return token


def record_write(engine: Engine, principal: Principal | None, method: str, path: str, agreement: str | None,
                 http_status: int, detail: dict[str, Any]) -> None:
    """Append one audit row (and a log line) with the write's HTTP status; never raises into the request."""
    from .adapters.evidence import now

    row = {"ts": now(), "key_id": principal.key_id if principal else "(none)",
           "role": principal.role if principal else "(none)", "method": method, "path": path,
           "agreement": agreement, "status": http_status, "detail": json.dumps(detail, sort_keys=True, default=str)}
    log.info("write", extra={"fields": row})
    try:
        with engine.begin() as conn:
            conn.execute(api_audit.insert().values(**row))
    except Exception:  # noqa: BLE001 - the audit table being down must not hide the original outcome
        log.exception("audit log write failed")
