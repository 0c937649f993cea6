"""The agreement's on-chain schedule (`IAgreement.Config`): built from the terms, ABI-encoded and
hashed exactly as the contract does, plus the packing of per-subject attainments."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from eth_utils.crypto import keccak

from oracle.core.addresses import checksum
from oracle.core.credit import BPS, Tier, capped_total, subject_credit, validate_tiers
from oracle.core.period import period_bounds, period_labels
from oracle.core.settlement import Settlement
from oracle.core.terms import Terms, terms_hash

SCOPES = {"estate": 0, "per_site": 1, "per_device": 2}
ZERO_ADDRESS = "0x" + "00" * 20
FLAG_DEFAULT_MAX = 1  # settlement flags (SettlementLib): the default credit is the period's maximum
FLAG_PARTY_SIGNERS = 2  # the vendor or the customer may be an oracle or an arbiter


@dataclass(frozen=True)
class ObjectiveSchedule:
    scope: int  # SCOPES value
    device_fee: int
    tiers: tuple[Tier, ...]  # (below_bps, credit_bps), below_bps descending


@dataclass(frozen=True)
class Config:
    """Mirror of the contract's packed Config (layout documented in IAgreement.sol).

    Oracles are kept sorted ascending, as the contract requires. `asset` is the ERC-20 address,
    or the zero address for native ETH."""

    customer: str
    asset: str
    terms_hash: bytes
    monthly_fee: int
    credit_cap_bps: int
    site_fees: tuple[int, ...]
    objectives: tuple[ObjectiveSchedule, ...]
    period_bounds: tuple[int, ...]
    oracles: tuple[str, ...]
    threshold: int
    settlement: Settlement | None = None  # None: no settlement section (the contract's defaults)

    def __post_init__(self) -> None:
        ordered = tuple(sorted((checksum(a) for a in self.oracles), key=lambda a: int(a, 16)))
        object.__setattr__(self, "oracles", ordered)
        object.__setattr__(self, "customer", checksum(self.customer))
        object.__setattr__(self, "asset", checksum(self.asset))
        if len(self.terms_hash) != 32:
            raise ValueError("terms_hash must be 32 bytes")
        for objective in self.objectives:
            validate_tiers(objective.tiers)

    def oracle_set(self) -> bytes:
        """threshold (1) | count (1) | oracles (20 each): the argument of proposeOracleSet."""
        return bytes([self.threshold, len(self.oracles)]) + b"".join(bytes.fromhex(a[2:]) for a in self.oracles)

    def encoded(self) -> bytes:
        """The packed Config exactly as the contract parses it."""
        out = bytearray()
        out += bytes.fromhex(self.customer[2:]) + bytes.fromhex(self.asset[2:]) + self.terms_hash
        out += self.monthly_fee.to_bytes(12, "big") + self.credit_cap_bps.to_bytes(2, "big")
        out += self.oracle_set()
        out += len(self.period_bounds).to_bytes(2, "big")
        out += b"".join(b.to_bytes(5, "big") for b in self.period_bounds)
        out += len(self.site_fees).to_bytes(2, "big") + b"".join(f.to_bytes(12, "big") for f in self.site_fees)
        out += len(self.objectives).to_bytes(1, "big")
        for o in self.objectives:
            out += bytes([o.scope]) + o.device_fee.to_bytes(12, "big") + bytes([len(o.tiers)])
            out += b"".join(b.to_bytes(2, "big") + c.to_bytes(2, "big") for b, c in o.tiers)
        if self.settlement is not None:
            out += _encode_settlement(self.settlement)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Config:
        """Inverse of `encoded` (e.g. for the Config emitted in AgreementConfigured)."""
        r = _Reader(data)
        customer, asset, terms = r.address(), r.address(), r.take(32)
        fee, cap, threshold, n = r.int(12), r.int(2), r.int(1), r.int(1)
        oracles = tuple(r.address() for _ in range(n))
        bounds = tuple(r.int(5) for _ in range(r.int(2)))
        sites = tuple(r.int(12) for _ in range(r.int(2)))
        objectives = []
        for _ in range(r.int(1)):
            scope, device_fee, nt = r.int(1), r.int(12), r.int(1)
            objectives.append(ObjectiveSchedule(scope, device_fee, tuple((r.int(2), r.int(2)) for _ in range(nt))))
        settlement = _decode_settlement(r) if r.off != len(data) else None
        if r.off != len(data):
            raise ValueError(f"config has {len(data) - r.off} trailing bytes")
        return cls(customer, asset, terms, fee, cap, sites, tuple(objectives), bounds, oracles, threshold,
                   settlement)

    def hash(self) -> bytes:
        """keccak256 of the packed Config: the contract's `configHash`."""
        return keccak(self.encoded())

    def with_oracles(self, oracles: Sequence[str], threshold: int) -> Config:
        return replace(self, oracles=tuple(oracles), threshold=threshold)

    def oracle_index(self, address: str) -> int:
        return self.oracles.index(checksum(address))

    @property
    def settlement_or_default(self) -> Settlement:
        """The settlement parameters in force (the contract's defaults without a section)."""
        return self.settlement or Settlement()

    @property
    def period_count(self) -> int:
        return len(self.period_bounds) - 1

    def max_credit_per_period(self) -> int:
        """The contract's `maxCreditPerPeriod`: worst-case credit of one period, capped."""
        cap = self.monthly_fee * self.credit_cap_bps // BPS
        total = 0
        for o in self.objectives:
            worst = o.tiers[-1][1]
            if o.scope == SCOPES["per_device"]:
                return cap
            fees = [self.monthly_fee] if o.scope == SCOPES["estate"] else list(self.site_fees)
            total += sum(fee * worst // BPS for fee in fees)
        return min(total, cap)

    def credit(self, attainments: Sequence[Sequence[int]]) -> int:
        """The credit the contract computes for these attainments (per objective, per subject)."""
        return capped_total(
            (subject_credit(self._fee(o, i), o.tiers, bps)
             for o, row in zip(self.objectives, attainments, strict=True)
             for i, bps in enumerate(row)),
            self.monthly_fee, self.credit_cap_bps)

    def _fee(self, o: ObjectiveSchedule, i: int) -> int:
        if o.scope == SCOPES["estate"]:
            return self.monthly_fee
        if o.scope == SCOPES["per_site"]:
            return self.site_fees[i]
        return o.device_fee


def _encode_settlement(s: Settlement) -> bytes:
    """challengeWindow (4) | reportDeadline (4) | arbitrationWindow (4) | flags (1) | disputeBond (12)
    | arbiterThreshold (1) | arbiterCount (1) | arbiters (20 each) | auditorCount (1) | auditors (20 each)"""
    flags = FLAG_DEFAULT_MAX if s.default_credit == "max" else 0
    flags |= FLAG_PARTY_SIGNERS if s.allow_party_signers else 0
    out = bytearray()
    for seconds in (s.challenge_window, s.report_deadline, s.arbitration_window):
        out += seconds.to_bytes(4, "big")
    out += bytes([flags]) + s.dispute_bond.to_bytes(12, "big") + bytes([s.arbiter_threshold, len(s.arbiters)])
    out += b"".join(bytes.fromhex(a[2:]) for a in s.arbiters)
    out += bytes([len(s.auditors)]) + b"".join(bytes.fromhex(a[2:]) for a in s.auditors)
    return bytes(out)


def _decode_settlement(r: _Reader) -> Settlement:
    window, deadline, arbitration, flags, bond = r.int(4), r.int(4), r.int(4), r.int(1), r.int(12)
    threshold, n = r.int(1), r.int(1)
    arbiters = tuple(r.address() for _ in range(n))
    auditors = tuple(r.address() for _ in range(r.int(1)))
    return Settlement(window, deadline, arbitration, "max" if flags & FLAG_DEFAULT_MAX else "none", arbiters,
                      threshold, bond, auditors, bool(flags & FLAG_PARTY_SIGNERS))


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.off = data, 0

    def take(self, n: int) -> bytes:
        if self.off + n > len(self.data):
            raise ValueError(f"config truncated at byte {self.off}")
        chunk = self.data[self.off:self.off + n]
        self.off += n
        return chunk

    def int(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def address(self) -> str:
        return checksum(self.take(20))


def pack_attainments(attainments: Sequence[Sequence[int]]) -> bytes:
    """Per objective: uint16 subject count, then each subject's attainment as uint16 (big-endian)."""
    out = bytearray()
    for row in attainments:
        if len(row) > 0xFFFF:
            raise ValueError(f"too many subjects in one objective: {len(row)}")
        out += len(row).to_bytes(2, "big")
        for bps in row:
            if not 0 <= bps <= BPS:
                raise ValueError(f"attainment {bps} bps is outside 0..{BPS}")
            out += int(bps).to_bytes(2, "big")
    return bytes(out)


def unpack_attainments(data: bytes) -> list[list[int]]:
    rows: list[list[int]] = []
    off = 0
    while off < len(data):
        n = int.from_bytes(data[off:off + 2], "big")
        off += 2
        rows.append([int.from_bytes(data[off + 2 * i:off + 2 * i + 2], "big") for i in range(n)])
        off += 2 * n
    if off != len(data):
        raise ValueError("truncated attainments")
    return rows


def config_from_terms(terms: Terms, *, customer: str, asset: str, oracles: Sequence[str],
                      threshold: int) -> Config:
    """The on-chain Config for an agreement under `terms`: fees and tiers from the terms, one
    period per calendar month of the term (agreement time zone), and the agreed oracle set."""
    labels = period_labels(terms)
    bounds = [period_bounds(terms, label)[0] for label in labels] + [period_bounds(terms, labels[-1])[1]]
    return Config(
        customer=customer,
        asset=asset,
        terms_hash=bytes.fromhex(terms_hash(terms)[2:]),
        monthly_fee=terms.monthly_fee,
        credit_cap_bps=terms.credit_cap_bps,
        site_fees=tuple(site.fee for site in terms.sites),
        objectives=tuple(ObjectiveSchedule(SCOPES[o.scope], o.device_fee, o.tiers) for o in terms.objectives),
        period_bounds=tuple(bounds),
        oracles=tuple(oracles),
        threshold=threshold,
        settlement=settlement_of(terms),
    )


def settlement_of(terms: Terms) -> Settlement | None:
    """The Config's settlement section for `terms`: none when the terms set neither `settlement:`
    nor `allow_party_signers` (so such agreements keep their Config and its gas)."""
    if terms.settlement is None and not terms.allow_party_signers:
        return None
    return replace(terms.settlement or Settlement(), allow_party_signers=terms.allow_party_signers)


# ------------------------------------------------------------------ the Config in force, from logs


class ConfigNotFound(ValueError):
    """No Config in an agreement's logs hashes to the `configHash` in its storage."""


CONFIG_EVENTS = ("AgreementConfigured", "OracleSetChanged")  # the events whose `config` field is a Config


def config_in_force(blobs: Sequence[bytes], config_hash: bytes, where: str = "agreement") -> Config:
    """The Config in force: the newest of the Config blobs an agreement logged (AgreementConfigured,
    then every OracleSetChanged, in log order) whose keccak is `config_hash`, the one in storage.
    Raises ConfigNotFound when none matches: a node or view must not fall back to another one."""
    for blob in reversed(blobs):
        if keccak(blob) == config_hash:
            return Config.decode(blob)
    raise ConfigNotFound(f"{where}: no Config in its logs hashes to configHash 0x{bytes(config_hash).hex()}")
