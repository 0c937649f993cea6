"""`evidence_root`: a Merkle root (oracle.core.merkle) over canonical binary leaves of the evidence a
period uses, so an auditor can prove one device's rows without the rest (docs/terms.md).

Leaf order: one leaf per device deployed in the window (sorted by device id), then one per
exclusion overlapping it (sorted by start, end, scope, reason), then one per ticket opened
in it (sorted by ticket id)."""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from oracle.core.merkle import leaf_hash, merkle_proof, merkle_root
from oracle.core.terms import Terms
from oracle.evidence.load import Evidence, Exclusion, Ticket, window_events
from oracle.evidence.schema import NO_END, STATES

_EVENT = np.dtype([("ts", ">i8"), ("state", "u1")])


def _s(text: str) -> bytes:
    b = text.encode()
    return struct.pack(">I", len(b)) + b


def _opt(t: int | None) -> bytes:
    return struct.pack(">Bq", 0, 0) if t is None else struct.pack(">Bq", 1, t)


def device_leaf_data(device_id: str, site_id: str, weight: int, deployed: int, retired: int | None,
                     events: list[tuple[int, str]] | bytes) -> bytes:
    """Canonical bytes of one device and its events (ts, state) sorted by ts."""
    packed = events if isinstance(events, bytes) else b"".join(
        struct.pack(">qB", ts, STATES.index(st)) for ts, st in events)
    return (b"slacomp/v1:device" + _s(device_id) + _s(site_id) + struct.pack(">Qq", weight, deployed)
            + _opt(retired) + struct.pack(">I", len(packed) // _EVENT.itemsize) + packed)


def exclusion_leaf_data(x: Exclusion) -> bytes:
    return b"slacomp/v1:exclusion" + struct.pack(">qq", x.start, x.end) + _s(x.scope) + _s(x.reason)


def ticket_leaf_data(t: Ticket) -> bytes:
    return (b"slacomp/v1:ticket" + _s(t.ticket_id) + _s(t.site_id) + _s(t.severity)
            + struct.pack(">q", t.opened) + _opt(t.responded) + _opt(t.resolved))


@dataclass(frozen=True)
class Leaves:
    names: tuple[str, ...]  # "device:<id>", "exclusion:<line>", "ticket:<id>"
    hashes: tuple[bytes, ...]

    @property
    def root(self) -> bytes:
        return merkle_root(self.hashes)

    def proof(self, name: str) -> list[bytes]:
        return merkle_proof(self.hashes, self.names.index(name))


def evidence_leaves(terms: Terms, ev: Evidence, w0: int, w1: int) -> Leaves:
    names: list[str] = []
    hashes: list[bytes] = []
    dev, ts, state = window_events(ev, w0, w1)
    packed = np.empty(len(dev), dtype=_EVENT)
    packed["ts"] = ts
    packed["state"] = state
    blob = packed.tobytes()
    size = _EVENT.itemsize
    bounds = np.searchsorted(dev, np.arange(ev.n_devices + 1)).tolist()
    live = np.flatnonzero((ev.deployed < w1) & (ev.retired > w0)).tolist()
    for i in live:
        ret = int(ev.retired[i])
        data = device_leaf_data(ev.device_ids[i], terms.sites[int(ev.device_site[i])].id, int(ev.device_weight[i]),
                                int(ev.deployed[i]), None if ret == NO_END else ret,
                                blob[bounds[i] * size:bounds[i + 1] * size])
        names.append(f"device:{ev.device_ids[i]}")
        hashes.append(leaf_hash(data))
    for x in sorted((x for x in ev.exclusions if x.start < w1 and x.end > w0),
                    key=lambda x: (x.start, x.end, x.scope, x.reason)):
        names.append(f"exclusion:{x.line}")
        hashes.append(leaf_hash(exclusion_leaf_data(x)))
    for t in sorted((t for t in ev.tickets if w0 <= t.opened < w1), key=lambda t: t.ticket_id):
        names.append(f"ticket:{t.ticket_id}")
        hashes.append(leaf_hash(ticket_leaf_data(t)))
    return Leaves(tuple(names), tuple(hashes))
