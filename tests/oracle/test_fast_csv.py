"""The fast CSV path (polars) against the exact reader: it returns the same values for every
file and instant it accepts, and gives up on everything the exact reader would reject, so
errors keep their file, line and field."""
from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

import oracle.evidence.load as evidence_module
from oracle.core.terms import parse_terms
from oracle.engine.kpi import compute_period
from oracle.evidence.csv import MemFile, parse_ts_text, read_raw
from oracle.evidence.csv_fast import fast_instants, read_columns, read_fast
from oracle.evidence.load import EvidenceError, load_evidence
from oracle.evidence.schema import STATES
from tests.oracle.conftest import AVAIL, DEVUP, MAXDOWN, UPTIME, site, terms_text, write_evidence

DEVICES = ["d1", "d2", "d3"]
VOCAB = {"device_id": DEVICES, "state": STATES}
SEEDS = ["2026-10-01T00:00:00Z", "2024-02-29T23:59:59Z", "1999-12-31T23:59:60Z", "0000-01-01T00:00:00Z",
         "9999-12-31T23:59:59Z", "2026-10-01T00:00:00+01:00", "2026-10-01T23:59:59-23:59",
         "2026-10-01T00:00:00+24:00", "2026-10-01T00:00:00+00:60", "0001-01-01T00:00:00+01:00",
         "2026-10-01 08:00:00.123456789z", "2026-03-29T01:30:00+0100"]


def _mutants(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "0123456789-T:Z+ tz.-:"
    out = list(SEEDS)
    for _ in range(n):
        s = list(rng.choice(SEEDS))
        for _ in range(rng.choice([1, 1, 2, 3])):
            i = rng.randrange(len(s))
            op = rng.random()
            if op < 0.5:
                s[i] = rng.choice(alphabet)
            elif op < 0.75:
                j = rng.randrange(len(s))
                s[i], s[j] = s[j], s[i]
            else:
                del s[i]
                s.insert(rng.randrange(len(s) + 1), rng.choice(alphabet))
        out.append("".join(s))
    return out


def test_fast_instants_agree_with_the_exact_parser_on_mutated_timestamps() -> None:
    texts = _mutants(20_000, seed=7)
    valid = [t for t in texts if parse_ts_text(t) is not None]
    got = fast_instants(pl.Series(valid))
    assert got is not None
    assert got.tolist() == [parse_ts_text(t) for t in valid]
    # Every invalid text makes the whole column fall back (to the reader with line numbers).
    invalid = [t for t in texts if parse_ts_text(t) is None]
    assert len(invalid) > 1000
    for t in invalid[:300]:
        assert fast_instants(pl.Series(valid[:3] + [t])) is None, t


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


ROWS = "2026-10-01T00:00:00Z,d1,available\n2026-10-01T00:05:00+01:00,d2,faulted\n2026-10-02t03:04:05.9Z,d3,offline\n"


@pytest.mark.parametrize("data", [
    "ts,device_id,state\n" + ROWS,
    "ts,device_id,state\n" + ROWS.rstrip("\n"),  # no final newline
    ("ts,device_id,state\n" + ROWS).replace("\n", "\r\n"),
    b"\xef\xbb\xbfts,device_id,state\n" + ROWS.encode(),
    "state,ts,device_id,note\n" + "".join(f"{s},{t},{d},x{i}\n" for i, (t, d, s) in
                                              enumerate(r.split(",") for r in ROWS.splitlines())),
])
def test_fast_reader_agrees_with_the_exact_reader(tmp_path: Path, data: str | bytes) -> None:
    path = _write(tmp_path / "events.csv", data)
    fast = read_fast(path, VOCAB, ["ts"])
    assert fast is not None
    raw = read_raw(path, ["ts", "device_id", "state"])
    ts, bad = raw.timestamps(raw.col("ts"))
    assert not bad.any()
    assert fast["ts"].tolist() == ts.tolist()
    for c, vocab in VOCAB.items():
        assert fast[c].tolist() == raw.factorize(raw.col(c), list(vocab)).tolist()
    # the same bytes held in memory (a bundle's member) read the same on both paths
    held = MemFile(path.name, path.read_bytes())
    in_memory = read_fast(held, VOCAB, ["ts"])
    assert in_memory is not None and {c: v.tolist() for c, v in in_memory.items()} == {
        c: v.tolist() for c, v in fast.items()}
    again = read_raw(held, ["ts", "device_id", "state"])
    assert (again.lines.tolist(), again.text(again.col("ts"))) == (raw.lines.tolist(), raw.text(raw.col("ts")))


@pytest.mark.parametrize("data", [
    "ts,device_id,state\n" + ROWS + "\n",  # blank line
    "ts,device_id,state\n" + ROWS + " \n",  # whitespace line
    "ts,device_id,state\n" + ROWS + "2026-10-01T00:00:00Z,d1\n",  # too few fields
    "ts,device_id,state\n" + ROWS + "2026-10-01T00:00:00Z,d1,available,x\n",  # too many
    "ts,device_id,state\n" + ROWS + '2026-10-01T00:00:00Z,"d1",available\n',  # quotes
    "ts,device_id,state,note\n2026-10-01T00:00:00Z,d1,available,\"a,b\"\n",
    "ts,device_id,state,note\n2026-10-01T00:00:00Z,d1,available,\n",  # empty field
    "ts,device_id,state\n" + ROWS + "2026-10-01T00:00:00Z, d1,available\n",  # spaces
    "ts,device_id,state\n" + ROWS + "2026-10-01T00:00:00Z,d9,available\n",  # unknown device
    "ts,device_id,state\n" + ROWS + "2026-10-01T00:00:00Z,d1,broken\n",  # unknown state
    "ts,device_id,state\n" + ROWS + "2026-10-1T00:00:00Z,d1,available\n",  # not an instant
    "ts,device_id,state\n" + ROWS + "2026-12-31T23:59:60Z,d1,available\n",  # leap second
    "ts,device_id,state\r2026-10-01T00:00:00Z,d1,available\r",  # CR line ends
    "ts,device_id\n2026-10-01T00:00:00Z,d1\n",  # missing column
    "ts,device_id,state,ts\n2026-10-01T00:00:00Z,d1,available,x\n",  # duplicate column
    b"ts,device_id,state\n2026-10-01T00:00:00Z,d1,available\xff\n",  # not UTF-8
])
def test_fast_reader_gives_up_where_the_exact_reader_must_decide(tmp_path: Path, data: str | bytes) -> None:
    assert read_fast(_write(tmp_path / "events.csv", data), VOCAB, ["ts"]) is None


def _evidence(folder: Path, events: list[tuple[object, ...]]) -> Path:
    devices = [(d, "north", 1, "2026-01-01T00:00:00Z", "") for d in DEVICES]
    return write_evidence(folder, devices=devices, events=events)


def test_fast_and_exact_loads_give_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    terms = parse_terms(terms_text([site("north", '{mon-fri: "08:00-18:00"}')], (AVAIL, MAXDOWN, UPTIME, DEVUP)))
    rng = random.Random(3)
    events = [(f"2026-10-{rng.randint(1, 31):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"
               + rng.choice(["Z", "+01:00", "-05:30"]), rng.choice(DEVICES), rng.choice(STATES)) for _ in range(3000)]
    events = list({(parse_ts_text(str(t)), d): (t, d, s) for t, d, s in events}.values())
    events += events[:50]  # identical repeats count once
    folder = _evidence(tmp_path / "ev", events)
    assert read_fast(folder / "events.csv", {"device_id": DEVICES, "state": STATES}, ["ts"]) is not None
    exact = compute_period(terms, load_evidence(folder, terms), "2026-10").to_json_dict()
    monkeypatch.setattr(evidence_module, "FAST_MIN_BYTES", 0)
    assert compute_period(terms, load_evidence(folder, terms), "2026-10").to_json_dict() == exact


def test_conflict_found_on_the_fast_path_still_names_both_lines(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    terms = parse_terms(terms_text([site("north")], (AVAIL,)))
    folder = _evidence(tmp_path / "ev", [("2026-10-01T00:00:00Z", "d1", "available"),
                                         ("2026-10-02T00:00:00Z", "d2", "available"),
                                         ("2026-10-01T01:00:00+01:00", "d1", "faulted")])
    monkeypatch.setattr(evidence_module, "FAST_MIN_BYTES", 0)
    with pytest.raises(EvidenceError) as exc:
        load_evidence(folder, terms)
    assert (exc.value.file, exc.value.line, exc.value.field) == ("events.csv", 4, "state")
    assert "lines 2, 4" in exc.value.message


def test_small_file_columns_are_the_exact_readers_values(tmp_path: Path) -> None:
    """read_columns below SMALL_BYTES goes through read_raw (vectorised timestamps from 64 rows
    on): on mutated timestamps it gives parse_ts_text's value for every row, or gives up if
    any row is not an instant, an id is unknown, or a line is blank."""
    texts = _mutants(6_000, seed=11)
    good = [(t, parse_ts_text(t)) for t in texts if "," not in t and parse_ts_text(t) is not None]
    assert len(good) > 300
    body = "ts,device_id,state\n" + "".join(f"{t},{DEVICES[i % 3]},{STATES[i % 5]}\n" for i, (t, _) in enumerate(good))
    cols = read_columns(_write(tmp_path / "events.csv", body), VOCAB, ["ts"])
    assert cols is not None
    assert cols["ts"].tolist() == [v for _, v in good]
    assert cols["device_id"].tolist() == [i % 3 for i in range(len(good))]
    assert cols["state"].tolist() == [i % 5 for i in range(len(good))]
    bad = next(t for t in texts if "," not in t and parse_ts_text(t) is None)
    for broken in (body + f"{bad},d1,available\n", body + "2026-10-01T00:00:00Z,d9,available\n",
                   body.replace("\n", "\n\n", 2)):
        assert read_columns(_write(tmp_path / "events.csv", broken), VOCAB, ["ts"]) is None
