"""The node's own errors (a user can act on them; the CLI prints them without a traceback)."""
from __future__ import annotations

from typing import Any


class ServiceError(RuntimeError):
    """The node cannot serve an agreement as configured (wrong terms file, no Config on-chain...)."""


class EvidenceChanged(ServiceError):
    """Rows for a period arrived while it was being closed: it is closed again on the next pass."""


class WorkerError(RuntimeError):
    """An exception raised in a worker process that could not travel back as itself."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message

    def __reduce__(self) -> tuple[Any, ...]:
        return (WorkerError, (self.kind, self.message))
