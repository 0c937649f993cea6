"""What a period froze: the one query for the end of the last period whose bundle a stored
report names. Rows before it are late (quarantined: that evidence is already signed)."""
from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from oracle.core.period import periods
from oracle.core.terms import Terms
from oracle.store.db import fetch_tuples, reports

_Q_FROZEN = select(func.max(reports.c.period)).where(reports.c.agreement == bindparam("agreement"),
                                                     reports.c.bundle_id.is_not(None))


def frozen_before_in(conn: Connection, terms: Terms, agreement: str) -> int | None:
    """The end of the agreement's last period frozen into a bundle (a report names it), or None."""
    ((last,),) = fetch_tuples(conn, _Q_FROZEN, {"agreement": agreement})
    return None if last is None else periods(terms)[int(last)].end
