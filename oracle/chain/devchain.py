"""Start a local development chain (Anvil from npm, or Ganache) as a subprocess on a free port."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3

from oracle.chain.abi import PROJECT_ROOT

NODE_BIN = PROJECT_ROOT / "node_modules" / ".bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _binary(name: str) -> str:
    local = NODE_BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: run `npm ci` (make setup) first")
    return found


@dataclass
class DevChain:
    url: str
    process: subprocess.Popen[bytes]

    def w3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 60}))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> DevChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(kind: str = "anvil", port: int | None = None, state_dir: Path | None = None,
          timeout: float = 60.0, timestamp: int | None = None) -> DevChain:
    """Launch `anvil` (default) or `ganache` and wait until it answers JSON-RPC. `timestamp`
    (Anvil only): the chain's time when it starts, going on from there as the seconds pass."""
    port = port or _free_port()
    if timestamp is not None and kind != "anvil":
        raise ValueError("a start timestamp is supported for anvil only")
    if kind == "anvil":
        cmd = [_binary("anvil"), "--port", str(port), "--silent", "--accounts", "10"]
        if state_dir is not None:
            cmd += ["--state", str(state_dir / "anvil-state.json")]
        if timestamp is not None:
            cmd += ["--timestamp", str(timestamp)]
    elif kind == "ganache":
        cmd = [_binary("ganache"), "--server.port", str(port), "--chain.hardfork", "shanghai",
               "--wallet.deterministic", "--logging.quiet", "--miner.defaultGasPrice", "1000000000"]
    else:
        raise ValueError(f"unknown chain kind {kind!r} (anvil | ganache)")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    w3 = Web3(Web3.HTTPProvider(url))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with code {proc.returncode}")
        try:
            if w3.is_connected():
                return DevChain(url, proc)
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"{kind} did not answer on {url} within {timeout}s")
