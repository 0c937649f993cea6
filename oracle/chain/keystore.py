"""Oracle keys from encrypted eth-account keystore files (Web3 Secret Storage). The password comes
from an environment variable or a file, never from the settings; a KeyRing never shows its keys
(repr, logs) and only signs 32-byte digests and transactions."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from oracle.chain.signing import Signer
from oracle.core.addresses import checksum


class KeystoreError(ValueError):
    """A keystore cannot be read or decrypted (the message never contains key material)."""


def read_password(env: str | None = None, file: str | Path | None = None) -> str:
    """The keystore password from `file` (first line) if given, else from the variable `env`."""
    if file is not None:
        try:
            lines = Path(file).read_text().splitlines()
        except OSError as exc:
            raise KeystoreError(f"password file {file}: {exc.strerror}") from None
        return lines[0] if lines else ""
    if env and env in os.environ:
        return os.environ[env]
    raise KeystoreError(f"no keystore password: set ${env} or give a password file")


def create_keystore(path: str | Path, private_key: bytes | str, password: str, *,
                    kdf: str = "scrypt", iterations: int | None = None) -> str:
    """Encrypt `private_key` into a keystore file (mode 0600); returns the address."""
    data = Account.encrypt(private_key, password, kdf=kdf, iterations=iterations)  # type: ignore[arg-type]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    return checksum("0x" + data["address"])


def load_keystore(path: str | Path, password: str) -> LocalAccount:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KeystoreError(f"keystore {path}: cannot read ({type(exc).__name__})") from None
    try:
        key = Account.decrypt(data, password)
    except ValueError:
        raise KeystoreError(f"keystore {path}: wrong password or corrupt file") from None
    account: LocalAccount = Account.from_key(key)
    return account


class KeyRing:
    """The node's local accounts by address."""

    def __init__(self, accounts: Iterable[LocalAccount]) -> None:
        self._accounts = {a.address: a for a in accounts}
        self._signers: dict[str, Signer] = {}

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], password: str) -> KeyRing:
        return cls(load_keystore(p, password) for p in paths)

    @property
    def addresses(self) -> list[str]:
        return list(self._accounts)

    def account(self, address: str) -> LocalAccount:
        try:
            return self._accounts[checksum(address)]  # type: ignore[index]  # checksum() gives a ChecksumAddress
        except KeyError:
            raise KeystoreError(f"no local key for {address}") from None

    def sign_digest(self, address: str, digest: bytes) -> bytes:
        """65-byte (r, s, v) signature, low s, v in {27, 28} (as `oracle.chain.signing`)."""
        account = self.account(address)
        signer = self._signers.get(account.address)
        if signer is None:
            signer = self._signers[account.address] = Signer(account.key)
        return signer.sign_digest(digest)

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and checksum(address) in self._accounts

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(self._accounts)})"

    def __getstate__(self) -> Any:  # keep keys out of pickles too
        raise TypeError("KeyRing cannot be serialised")
