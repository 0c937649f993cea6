"""The report lifecycle: every (from, to) pair of states is tried against the real database; the
writer accepts exactly the transitions of the table and refuses every other one, writing nothing."""
from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from oracle.node.states import (
    FINAL,
    TRANSITIONS,
    IllegalTransition,
    Move,
    ReportState,
    insert_closed,
    move,
    move_many,
    note,
)
from oracle.store import db

PAIRS = list(itertools.product(ReportState, ReportState))


def _report(engine, state: ReportState) -> int:
    """A report row in `state` (written directly: the test sets up what the writer then moves)."""
    stamp = db.now()
    with engine.begin() as conn:
        insert_closed(conn, [{"agreement": f"a-{state}", "address": "0x" + "11" * 20, "period": 0,
                              "label": "2026-10", "created_at": stamp, "updated_at": stamp}])
        conn.execute(db.reports.update().where(db.reports.c.agreement == f"a-{state}").values(state=str(state)))
        return conn.execute(select(db.reports.c.id).where(db.reports.c.agreement == f"a-{state}")).scalar_one()


def _state(engine, row_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(select(db.reports.c.state).where(db.reports.c.id == row_id)).scalar_one()


def test_every_transition_is_accepted_or_refused_as_the_table_says(engine):
    legal = illegal = 0
    for old, new in PAIRS:
        with engine.begin() as conn:
            conn.execute(db.reports.delete())
        row_id = _report(engine, old)
        if new in TRANSITIONS[old]:
            with engine.begin() as conn:
                move(conn, row_id, new, error="moved")
            assert _state(engine, row_id) == new
            legal += 1
        else:
            with pytest.raises(IllegalTransition), engine.begin() as conn:
                move(conn, row_id, new, error="moved")
            assert _state(engine, row_id) == old  # nothing written
            illegal += 1
    assert legal == sum(len(v) for v in TRANSITIONS.values()) and legal + illegal == len(ReportState) ** 2


def test_a_final_state_has_no_way_out_and_every_other_one_has():
    assert all(not TRANSITIONS[s] for s in FINAL)
    assert all(TRANSITIONS[s] for s in ReportState if s not in FINAL)


def test_one_illegal_move_in_a_batch_writes_none_of_it(engine):
    signed, final = _report(engine, ReportState.SIGNED), _report(engine, ReportState.CONFIRMED)
    with pytest.raises(IllegalTransition), engine.begin() as conn:
        move_many(conn, [Move(signed, ReportState.SENT, {"tx_hash": "0x01"}), Move(final, ReportState.SENT)])
    assert (_state(engine, signed), _state(engine, final)) == (ReportState.SIGNED, ReportState.CONFIRMED)


def test_a_missing_report_cannot_move_and_a_note_cannot_set_a_state(engine):
    with pytest.raises(IllegalTransition), engine.begin() as conn:
        move(conn, 12345, ReportState.SIGNED)
    row_id = _report(engine, ReportState.CLOSED)
    with pytest.raises(ValueError), engine.begin() as conn:
        note(conn, row_id, state="signed")
    assert _state(engine, row_id) == ReportState.CLOSED
