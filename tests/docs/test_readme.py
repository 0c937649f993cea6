"""The README's walkthrough is executed as written: every ```sh block, in order, in one bash
session from the repository root (the chain port is swapped for a free one)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from oracle.chain.abi import PROJECT_ROOT
from oracle.chain.devchain import _free_port

README = PROJECT_ROOT / "README.md"
WORK = PROJECT_ROOT / "var" / "walkthrough"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_every_readme_command_runs():
    blocks = sh_blocks(README.read_text())
    assert len(blocks) >= 8, "the walkthrough lost its command blocks"
    port = str(_free_port())
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    for i, block in enumerate(blocks):
        script += f"echo '>>> block {i}' >&2\n" + block.replace("8545", port) + "\n"
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    env = dict(os.environ, PATH=f"{PROJECT_ROOT / 'node_modules' / '.bin'}:{os.environ['PATH']}")
    out = subprocess.run(["bash", "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, f"README walkthrough failed:\n{out.stderr[-3000:]}\n{out.stdout[-2000:]}"
    # what the walkthrough claims happened, did: the month settled and verified; the audit passed
    verification = json.loads((WORK / "verify.json").read_text())
    assert verification["ok"] and verification["periods"][0]["credit"] == str(2_750 * 10**6)
    audit = json.loads((WORK / "audit" / "audit.json").read_text())
    assert audit["ok"] is True and audit["first_discrepancy"] is None
    proof = json.loads(out.stdout[out.stdout.rindex('{\n  "period"'):])
    assert proof["verified"] is True and proof["device"] == "N1"
