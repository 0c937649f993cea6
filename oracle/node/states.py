"""A report's lifecycle in the outbox: its states, the table of transitions allowed between them
(drawn in `oracle.node.outbox`'s docstring), and the one writer of `reports.state`: every state
change goes through `move`/`move_many`, and an illegal one raises `IllegalTransition`, writing
nothing."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from oracle.store.db import insert_ignore, now, reports


class ReportState(StrEnum):
    """The values of `reports.state` (a StrEnum: the column keeps its strings)."""

    CLOSED = "closed"
    SIGNED = "signed"
    SENT = "sent"
    MINED = "mined"
    CONFIRMED = "confirmed"
    SETTLED_ELSEWHERE = "settled_elsewhere"
    FAILED = "failed"


S = ReportState
FINAL = frozenset({S.CONFIRMED, S.SETTLED_ELSEWHERE, S.FAILED})
IN_FLIGHT = frozenset({S.SENT, S.MINED})

TRANSITIONS: Mapping[ReportState, frozenset[ReportState]] = {
    S.CLOSED: frozenset({S.SIGNED, S.MINED, S.SETTLED_ELSEWHERE}),
    S.SIGNED: frozenset({S.CLOSED, S.SENT, S.MINED, S.SETTLED_ELSEWHERE, S.FAILED}),
    S.SENT: frozenset({S.SIGNED, S.MINED, S.CONFIRMED, S.SETTLED_ELSEWHERE, S.FAILED}),
    S.MINED: frozenset({S.SENT, S.CONFIRMED}),
    S.CONFIRMED: frozenset(),
    S.SETTLED_ELSEWHERE: frozenset(),
    S.FAILED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A state change the lifecycle does not allow (a bug: nothing was written)."""

    def __init__(self, row_id: int, old: str | None, new: str) -> None:
        super().__init__(f"report {row_id}: {old} -> {new} is not an allowed transition")
        self.row_id, self.old, self.new = row_id, old, new


def allowed(old: str, new: str) -> bool:
    """Whether the lifecycle allows `old` -> `new`."""
    return ReportState(new) in TRANSITIONS[ReportState(old)]


@dataclass(frozen=True, slots=True)
class Move:
    """One report's state change, with the columns written with it."""

    row_id: int
    to: ReportState
    values: Mapping[str, object] = field(default_factory=dict)


def move(conn: Connection, row_id: int, to: ReportState, **values: object) -> None:
    """Change one report's state (and `values`) in the caller's database transaction."""
    move_many(conn, [Move(row_id, to, values)])


def move_many(conn: Connection, moves: Sequence[Move]) -> None:
    """Change many reports' states in the caller's transaction: the current states are read
    first (one query) and every move checked against TRANSITIONS; then one UPDATE per set of
    columns, executed for all the moves that write that set."""
    if not moves:
        return
    current = _states(conn, [m.row_id for m in moves])
    for m in moves:
        old = current.get(m.row_id)
        if old is None or not allowed(old, m.to):
            raise IllegalTransition(m.row_id, old, m.to)
        if "state" in m.values:
            raise ValueError("a move's values must not name `state`")
    stamp = now()
    groups: dict[tuple[str, ...], list[Move]] = {}
    for m in moves:
        groups.setdefault(tuple(sorted(m.values)), []).append(m)
    for columns, group in groups.items():
        stmt = update(reports).where(reports.c.id == bindparam("row_id")).values(
            state=bindparam("new_state"), updated_at=stamp, **{c: bindparam("v_" + c) for c in columns})
        conn.execute(stmt, [{"row_id": m.row_id, "new_state": str(m.to)}
                            | {"v_" + c: m.values[c] for c in columns} for m in group])


def note(conn: Connection, row_id: int, **values: object) -> None:
    """Write fields of a report other than its state (an error, a transaction hash)."""
    if "state" in values:
        raise ValueError("a report's state changes through `move` only")
    conn.execute(update(reports).where(reports.c.id == row_id).values(updated_at=now(), **values))


def insert_closed(conn: Connection, rows: Iterable[Mapping[str, object]]) -> None:
    """Insert new reports, each in the first state (`closed`); a report already stored stays."""
    insert_ignore(conn, reports, [dict(r) | {"state": str(S.CLOSED)} for r in rows])


def _states(conn: Connection, row_ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for i in range(0, len(row_ids), 500):
        for row in conn.execute(select(reports.c.id, reports.c.state).where(
                reports.c.id.in_(row_ids[i:i + 500]))):
            out[row.id] = row.state
    return out
