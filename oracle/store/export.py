"""Rows out of the node's database: `export_evidence` turns a window's rows back into the
canonical evidence CSV files (the bytes a bundle freezes and an auditor replays)."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import Text, bindparam, cast, func, literal_column, select
from sqlalchemy.engine import Connection

from oracle.core.calendar import iso_utc, iso_utc_array
from oracle.evidence.schema import COLUMNS, DEVICES, EVENTS, EXCLUSIONS, STATES, TICKETS
from oracle.store.db import comma_list, devices, events, exclusions, fetch_tuples, tickets


def _csv(header: tuple[str, ...], rows: Iterable[Iterable[Any]]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue().encode()


def _csv_cells(cells: list[Any]) -> str:
    """Cells as `_csv` writes them in a row (quoted where needed), without the line end."""
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()


def _events_csv(dev: np.ndarray, ts: np.ndarray, state: np.ndarray, ids: dict[int, str]) -> bytes:
    """events.csv from (device row id, ts, state code) columns in file order: the same bytes as
    _csv, built vectorised from the instants' text and each (device, state)'s cells (a month of
    a large estate is millions of rows)."""
    pairs, which = np.unique(dev * len(STATES) + state, return_inverse=True)
    tails = np.array(["," + _csv_cells([ids[int(p) // len(STATES)], STATES[int(p) % len(STATES)]]) + "\n"
                      for p in pairs.tolist()], dtype=str)
    lines = np.strings.add(iso_utc_array(ts), tails[which])
    return (",".join(COLUMNS["events"]) + "\n" + "".join(lines.tolist())).encode()


_earlier = events.alias("earlier")
_window = events.alias("window")
_STATE_SLOTS = 8  # an event travels as ts * 8 + state code (a power of two above len(STATES))
assert len(STATES) <= _STATE_SLOTS
# The agreement's devices in device_id order, each with the events the window uses as one text
# of numbers ts * 8 + state (`comma_list`): its events inside [start, end) and its last one
# before start. The database builds the text while it seeks the device's primary-key range: a list of
# per-row tuples costs several times more to fetch.
_DEVICES_AND_WINDOW = select(
    devices.c.id, devices.c.device_id, devices.c.site_id, devices.c.weight, devices.c.deployed_at,
    devices.c.retired_at,
    select(comma_list(cast(_window.c.ts * literal_column(str(_STATE_SLOTS)) + _window.c.state, Text))).where(
        _window.c.device == devices.c.id,
        _window.c.ts >= func.coalesce(select(func.max(_earlier.c.ts)).where(
            _earlier.c.device == devices.c.id, _earlier.c.ts < bindparam("start")).correlate(devices).scalar_subquery(),
            bindparam("start")),
        _window.c.ts < bindparam("end")).scalar_subquery(),
).where(devices.c.agreement == bindparam("agreement")).order_by(devices.c.device_id)
_EXCLUSIONS_IN = select(exclusions.c.start_ts, exclusions.c.end_ts, exclusions.c.scope, exclusions.c.reason).where(
    exclusions.c.agreement == bindparam("agreement"), exclusions.c.start_ts < bindparam("end"),
    exclusions.c.end_ts > bindparam("start")).order_by(
    exclusions.c.start_ts, exclusions.c.end_ts, exclusions.c.scope, exclusions.c.reason)
_TICKETS_IN = select(tickets.c.ticket_id, tickets.c.site_id, tickets.c.severity, tickets.c.opened_at,
                     tickets.c.responded_at, tickets.c.resolved_at).where(
    tickets.c.agreement == bindparam("agreement"), tickets.c.opened_at >= bindparam("start"),
    tickets.c.opened_at < bindparam("end")).order_by(tickets.c.ticket_id)


def _window_columns(texts: list[tuple[int, str | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(device row id, ts, state) columns in file order (device_id, then ts) from each device's
    text of ts * 8 + state numbers, devices in file order. The aggregate promises no order
    within a device: the rows are sorted here unless they came in order."""
    mine = [(i, t) for i, t in texts if t]
    if not mine:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    packed = np.fromstring(",".join(t for _, t in mine), dtype=np.int64, sep=",")
    counts = np.array([t.count(",") + 1 for _, t in mine], dtype=np.int64)
    if len(packed) != int(counts.sum()):
        raise ValueError("events export: an aggregated text did not parse as numbers")
    ts, state = packed >> 3, packed & (_STATE_SLOTS - 1)  # floor division: negative instants too
    block = np.repeat(np.arange(len(mine), dtype=np.int64), counts)
    if bool(((block[1:] == block[:-1]) & (ts[1:] <= ts[:-1])).any()):
        order = np.lexsort((ts, block))
        block, ts, state = block[order], ts[order], state[order]
    return np.array([i for i, _ in mine], dtype=np.int64)[block], ts, state


def _iso(t: int | None) -> str | None:
    return None if t is None else iso_utc(t)


def export_evidence(conn: Connection, agreement: str, start: int, end: int) -> dict[str, bytes]:
    """The canonical evidence files of window [start, end): the whole inventory, the events the
    window uses (inside it, plus each device's last event before it), the exclusions overlapping
    it and the tickets opened in it; sorted, timestamps as UTC `...Z`."""
    window = {"agreement": agreement, "start": start, "end": end}
    devs = fetch_tuples(conn, _DEVICES_AND_WINDOW, window)
    files = {DEVICES: _csv(COLUMNS["devices"], (
        (did, site, weight, _iso(deployed), _iso(retired)) for _, did, site, weight, deployed, retired, _ in devs))}
    files[EVENTS] = _events_csv(*_window_columns([(d[0], d[6]) for d in devs]), {d[0]: d[1] for d in devs})
    files[EXCLUSIONS] = _csv(COLUMNS["exclusions"], (
        (_iso(a), _iso(b), scope, reason) for a, b, scope, reason in fetch_tuples(conn, _EXCLUSIONS_IN, window)))
    files[TICKETS] = _csv(COLUMNS["tickets"], (
        (tid, site, sev, _iso(opened), _iso(responded), _iso(resolved))
        for tid, site, sev, opened, responded, resolved in fetch_tuples(conn, _TICKETS_IN, window)))
    return files
