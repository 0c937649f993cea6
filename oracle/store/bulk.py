"""The columnar path of ingest for a large, clean events CSV: validated as whole columns and
stored with a few large driver-level statements in primary-key order. It declines (None) on
anything that needs a row-by-row judgement, which `oracle.store.ingest` then gives."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Connection

from oracle.evidence.csv_fast import read_columns
from oracle.evidence.schema import STATES

_FAST_CHUNK = 200_000


def store_events_bulk(conn: Connection, ids: dict[str, int], source_id: int, path: Path,
                      frozen_before: int | None, held: Callable[[int, int], bool]) -> int | None:
    """The columnar path for a large, clean events CSV: every row valid, no two rows for one
    device and instant, nothing already held in its time range. Then the rows are stored in
    primary-key order with a few large driver-level statements and their count is returned; otherwise
    nothing is written and the row-by-row path (which names the line and field of every
    problem) takes the file."""
    known = tuple(sorted(ids))
    cols = read_columns(path, {"device_id": known, "state": STATES}, ["ts"]) if known else None
    if cols is None or not len(cols["ts"]):
        return None
    dev, ts, state = cols["device_id"], cols["ts"], cols["state"]
    t_lo, t_hi = int(ts.min()), int(ts.max())
    if frozen_before is not None and t_lo < frozen_before:
        return None  # rows for a closed period are quarantined one by one
    # (device id, ts) order: the primary key's, so the insert appends to the B-tree
    key_of = np.array([ids[k] for k in known], dtype=np.int64)
    rank = np.empty(len(known), dtype=np.uint16 if len(known) <= 1 << 16 else np.int64)
    rank[np.argsort(key_of, kind="stable")] = np.arange(len(known))
    dkey = rank[dev]
    if bool((ts[1:] >= ts[:-1]).all()):  # the usual time-ordered file: one stable (radix) sort
        order = np.argsort(dkey, kind="stable")
    else:
        order = np.lexsort((ts, dkey))
    dkey, ts = dkey[order], ts[order]
    if bool(((dkey[1:] == dkey[:-1]) & (ts[1:] == ts[:-1])).any()):
        return None  # duplicates or conflicts: counted and explained row by row
    if held(t_lo, t_hi):  # rows already held in the range: compared row by row
        return None
    # device id, ts, state code, source id, line: int64 columns, one row each (the source id a
    # bound value too, so the statement text is the same for every file and its prepared form is reused)
    table = np.empty((len(order), 5), dtype=np.int64)
    table[:, 0] = key_of[dev[order]]
    table[:, 1] = ts
    table[:, 2] = state[order]
    table[:, 3] = source_id
    np.add(order, 2, out=table[:, 4])  # header is line 1
    del dkey, ts, dev, state, cols
    raw = conn.connection.driver_connection
    assert raw is not None  # a live connection
    cursor = raw.cursor()
    try:
        if isinstance(raw, sqlite3.Connection):
            _insert_sqlite(raw, cursor, table)
        else:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            sql = f"INSERT INTO events (device, ts, state, source_id, line) VALUES ({', '.join([mark] * 5)})"
            for lo in range(0, len(table), _FAST_CHUNK):
                cursor.executemany(sql, table[lo:lo + _FAST_CHUNK].tolist())
    finally:
        cursor.close()
    return len(table)


def _insert_sqlite(raw: sqlite3.Connection, cursor: sqlite3.Cursor, table: np.ndarray) -> None:
    """Rows of (device, ts, state, source id, line) as multi-row INSERTs: one bound parameter list
    per statement (no per-row tuples), about twice executemany's rate. Statements hold a power of
    two of rows (the tail split by its binary digits): a handful of distinct texts, prepared once
    per connection and then found in the driver's statement cache. 256 rows a statement for a
    small file, 1,024 for a large one (measured: each is the faster for its size)."""
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(raw, "getlimit") else 999
    per = 1 << max(0, min(10 if len(table) >= 1 << 16 else 8, (limit // 5).bit_length() - 1))
    full_sql = _values_sql(per)
    chunk = max(1, _FAST_CHUNK // per) * per
    for lo in range(0, len(table), chunk):
        part = table[lo:lo + chunk]
        whole = len(part) // per * per
        if whole:  # one parameter list of per*5 values for each statement
            cursor.executemany(full_sql, part[:whole].reshape(-1, 5 * per).tolist())
        rows = per >> 1
        while whole < len(part):
            if len(part) - whole >= rows:
                cursor.execute(_values_sql(rows), part[whole:whole + rows].ravel().tolist())
                whole += rows
            rows >>= 1


def _values_sql(rows: int) -> str:
    return "INSERT INTO events (device, ts, state, source_id, line) VALUES " + ",".join(["(?,?,?,?,?)"] * rows)
