"""The terms' optional `settlement:` block (challenge window, report deadline, arbitration, default
credit, arbiters, dispute bond, auditors) and the top-level `allow_party_signers`: parsed and
validated into a frozen `Settlement`, the values the agreement's Config carries (docs/terms.md §7)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oracle.core.addresses import checksum
from oracle.core.terms import TermsError, _int, _Reader, parse_duration, parse_money

DAY = 86_400
DEFAULT_CREDITS = ("max", "none")
MAX_SIGNERS = 32  # the contract's bound on oracles, arbiters and auditors
MAX_DURATION = 2**32 - 1  # 4 bytes in the Config
MAX_BOND = 2**96 - 1  # 12 bytes in the Config


@dataclass(frozen=True)
class Settlement:
    """How periods settle. The defaults are the contract's when the Config has no settlement
    section: no challenge window (a report pays at once), a 30-day report deadline, a 14-day
    arbitration window, and the period's maximum credit by default."""

    challenge_window: int = 0  # seconds
    report_deadline: int = 30 * DAY
    arbitration_window: int = 14 * DAY
    default_credit: str = "max"  # see DEFAULT_CREDITS
    arbiters: tuple[str, ...] = ()  # sorted ascending, as the contract requires
    arbiter_threshold: int = 0
    dispute_bond: int = 0  # smallest units of the asset
    auditors: tuple[str, ...] = ()  # sorted ascending
    allow_party_signers: bool = False  # the terms' top-level key; travels in the Config's flags

    def __post_init__(self) -> None:
        for name in ("arbiters", "auditors"):
            ordered = tuple(sorted((checksum(a) for a in getattr(self, name)), key=lambda a: int(a, 16)))
            object.__setattr__(self, name, ordered)
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """The first rule the contract would reject these values for, as 'field: message'."""
        for name in ("challenge_window", "report_deadline", "arbitration_window"):
            value = getattr(self, name)
            if not (0 if name == "challenge_window" else 1) <= value <= MAX_DURATION:
                low = 0 if name == "challenge_window" else 1
                return f"{name}: {value} s is not in {low}..{MAX_DURATION}"
        if self.default_credit not in DEFAULT_CREDITS:
            return f"default_credit: {self.default_credit!r} is not one of {', '.join(DEFAULT_CREDITS)}"
        if not 0 <= self.dispute_bond <= MAX_BOND:
            return f"dispute_bond: {self.dispute_bond} does not fit 12 bytes"
        for name in ("arbiters", "auditors"):
            items = getattr(self, name)
            if len(items) > MAX_SIGNERS or len(set(items)) != len(items):
                return f"{name}: at most {MAX_SIGNERS} distinct addresses"
        n, m = len(self.arbiters), self.arbiter_threshold
        if (n and not 1 <= m <= n) or (not n and m):
            return f"arbiter_threshold: {m} is not in 1..{n} (the number of arbiters)" if n else \
                "arbiter_threshold: set without arbiters"
        if self.challenge_window and not n:
            return "arbiters: a challenge window needs arbiters to resolve disputes"
        return None

    def canonical(self) -> dict[str, Any]:
        """The block in the terms' canonical form (every key, defaults filled in)."""
        return {
            "challenge_window": self.challenge_window, "report_deadline": self.report_deadline,
            "arbitration_window": self.arbitration_window, "default_credit": self.default_credit,
            "arbiters": list(self.arbiters), "arbiter_threshold": self.arbiter_threshold,
            "dispute_bond": self.dispute_bond, "auditors": list(self.auditors),
        }


def _duration(value: Any, field: str, zero_ok: bool = False) -> int:
    if zero_ok and value in (0, "0", "0s"):
        return 0
    return parse_duration(value, field)


def _addresses(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TermsError(field, "expected a list of 0x addresses")
    out: list[str] = []
    for i, item in enumerate(value):
        try:
            out.append(checksum(str(item)))
        except (ValueError, TypeError):
            raise TermsError(f"{field}[{i}]", f"{item!r} is not a 20-byte 0x address") from None
        if out[-1] in out[:-1]:
            raise TermsError(f"{field}[{i}]", f"{item} is listed twice")
    return tuple(out)


def parse_settlement(value: Any, decimals: int, allow_party_signers: bool) -> Settlement:
    """The `settlement:` mapping (every key optional) -> Settlement; TermsError names the key."""
    r = _Reader(value, "settlement")
    kwargs: dict[str, Any] = {"allow_party_signers": allow_party_signers}
    if (v := r.get("challenge_window", None)) is not None:
        kwargs["challenge_window"] = _duration(v, r.sub("challenge_window"), zero_ok=True)
    for key in ("report_deadline", "arbitration_window"):
        if (v := r.get(key, None)) is not None:
            kwargs[key] = _duration(v, r.sub(key))
    if (v := r.get("default_credit", None)) is not None:
        if v not in DEFAULT_CREDITS:
            raise TermsError(r.sub("default_credit"), f"{v!r} is not one of {', '.join(DEFAULT_CREDITS)}")
        kwargs["default_credit"] = v
    for key in ("arbiters", "auditors"):
        if (v := r.get(key, None)) is not None:
            kwargs[key] = _addresses(v, r.sub(key))
    if (v := r.get("arbiter_threshold", None)) is not None:
        kwargs["arbiter_threshold"] = _int(v, r.sub("arbiter_threshold"), 1, MAX_SIGNERS)
    if (v := r.get("dispute_bond", None)) is not None:
        kwargs["dispute_bond"] = parse_money(v, decimals, r.sub("dispute_bond"))
    r.finish()
    try:
        return Settlement(**kwargs)
    except ValueError as exc:
        key, _, message = str(exc).partition(": ")
        raise TermsError(r.sub(key), message) from None
