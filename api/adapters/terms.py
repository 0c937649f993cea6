"""The API's adapter to the terms: parsing and hashing (oracle.core.terms), the periods of a term,
and the registry of which terms file and database key belong to which agreement (an oracle node's
settings, then the API's own terms store, files named by their hash)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from oracle.core.calendar import iso_utc
from oracle.core.period import Period, evidence_start, periods
from oracle.core.terms import Terms, TermsError, canonical_bytes, canonical_dict, load_terms, parse_terms, terms_hash
from oracle.node.settings import load_settings

from ..models import TermsResult

__all__ = ["Period", "Registry", "Terms", "TermsError", "TermsUnknown", "canonical_dict", "evidence_start",
           "iso_utc", "label_of", "parse_terms", "periods", "summary", "terms_hash"]


class TermsUnknown(LookupError):
    """This service holds no terms file for the agreement (register it first)."""


def summary(terms: Terms) -> TermsResult:
    """A terms file's canonical form, termsHash and periods."""
    return TermsResult(agreement=terms.agreement, terms_hash=terms_hash(terms),
                       canonical=canonical_bytes(terms).decode(), normalized=canonical_dict(terms),
                       periods=[{"label": p.label, "start": iso_utc(p.start), "end": iso_utc(p.end)}
                                for p in periods(terms)])


def label_of(terms: Terms | None, index: int | None) -> str | None:
    """The label of period `index` of the term (None when unknown or out of the term)."""
    if terms is None or index is None or not 0 <= index < terms.periods:
        return None
    return periods(terms)[index].label


@dataclass(frozen=True)
class Known:
    key: str  # the agreement's key in the oracle database
    terms_path: Path | None


class Registry:
    """Agreement keys and terms files: from an oracle node's settings, else the API's terms store
    (`<terms_store>/<termsHash>.yaml`, the agreement's address as its key)."""

    def __init__(self, terms_store: Path, oracle_config: Path | None) -> None:
        self.terms_store = terms_store
        self._known: dict[str, Known] = {}
        if oracle_config is not None:
            for spec in load_settings(oracle_config).agreements:
                self._known[spec.address.lower()] = Known(spec.key, spec.terms)
        self._terms: dict[tuple[Path, float], Terms] = {}
        self._lock = threading.Lock()

    def key(self, address: str) -> str:
        known = self._known.get(address.lower())
        return known.key if known else address.lower()

    def _terms_path(self, address: str, onchain_hash: str) -> Path:
        known = self._known.get(address.lower())
        if known and known.terms_path:
            return known.terms_path
        return self.terms_store / f"{onchain_hash.lower()}.yaml"

    def terms(self, address: str, onchain_hash: str) -> Terms:
        """The agreement's terms (TermsUnknown when no file is registered), re-read when it changes."""
        path = self._terms_path(address, onchain_hash)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            raise TermsUnknown(f"no terms file hashing to {onchain_hash} is registered with this service "
                               f"(PUT /v1/agreements/{address}/terms)") from None
        with self._lock:
            cached = self._terms.get((path, mtime))
        if cached is None:
            cached = load_terms(path)
            with self._lock:
                self._terms[(path, mtime)] = cached
        return cached

    def terms_or_none(self, address: str, onchain_hash: str) -> Terms | None:
        try:
            return self.terms(address, onchain_hash)
        except TermsUnknown:
            return None

    def store(self, text: str) -> Terms:
        """Validate and keep a terms file under its hash (raises TermsError)."""
        terms = parse_terms(text)
        self.terms_store.mkdir(parents=True, exist_ok=True)
        path = self.terms_store / f"{terms_hash(terms)}.yaml"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        return terms
