"""Run one pass of the oracle service and SIGKILL the process at a named point of the outbox
(`closed`, `signed`, `sent_persisted`, `broadcast`): a real crash, no cleanup, no finally blocks.

    python crashnode.py SETTINGS POINT"""
from __future__ import annotations

import os
import signal
import sys

from oracle.node.loop import Service
from oracle.node.settings import load_settings


def main() -> int:
    config, point = sys.argv[1], sys.argv[2]

    def hook(at: str, row: dict) -> None:
        if at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    Service(load_settings(config), hook=hook).tick()
    return 0


if __name__ == "__main__":
    sys.exit(main())
