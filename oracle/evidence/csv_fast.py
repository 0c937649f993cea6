"""The fast path of the evidence CSV reader: polars' multi-threaded reader for large plain files
in the usual forms. `read_fast` and `read_columns` give up (return None) on anything they do not
vouch for, and the exact reader (`oracle.evidence.csv.read_raw`) decides what is wrong and where."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from numpy.typing import NDArray

from oracle.evidence.csv import Columns, CsvProblems, MemFile, Source, _head, parse_ts_text, read_raw, source_size

FAST_MIN_BYTES = 4 << 20  # below this the exact reader is about as fast
# The instant forms the fast path reads. polars' strptime alone is lenient (one-digit fields,
# spaces, signs, leap second 60), so a row must first match one of these shapes exactly;
# years below 1000 and every other form parse_ts_text accepts go through parse_ts_text.
_ZULU_RE = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9]Z$"
_ZULU_FMT = "%Y-%m-%dT%H:%M:%SZ"
_OFFSET_RE = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9][+-](?:[01][0-9]|2[0-3]):[0-5][0-9]$"
_OFFSET_FMT = "%Y-%m-%dT%H:%M:%S%:z"
_DT = pl.Datetime("us", "UTC")


def _instants(col: pl.Expr, shape: str, fmt: str) -> pl.Expr:
    """Epoch seconds of the rows in `shape` that are real instants, null elsewhere."""
    return pl.when(col.str.contains(shape)).then(col.str.strptime(_DT, fmt, strict=False).dt.epoch("s"))


def fast_instants(values: pl.Series) -> NDArray[np.int64] | None:
    """Epoch seconds of each string exactly as parse_ts_text reads it (which it does itself
    for forms other than the fast shapes); None if one is null or not an instant."""
    t = values.rename("v").to_frame().select(
        pl.coalesce(_instants(pl.col("v"), _ZULU_RE, _ZULU_FMT), _instants(pl.col("v"), _OFFSET_RE, _OFFSET_FMT)))
    out = t.to_series().fill_null(0).to_numpy().astype(np.int64)
    idx = np.flatnonzero(t.to_series().is_null().to_numpy())
    for i, text in zip(idx.tolist(), values.gather(idx).to_list()):
        v = None if text is None else parse_ts_text(text)
        if v is None:
            return None
        out[i] = v
    return out


SMALL_BYTES = 1 << 20  # read_columns reads files below this with the exact reader (polars' start-up dominates)


def read_columns(path: Source, enums: Mapping[str, Sequence[str]], instants: Sequence[str]) -> Columns | None:
    """read_fast for large files; below SMALL_BYTES the exact reader (read_raw) gives the same
    columns, or None where any value or line would need the caller's row-by-row path."""
    if source_size(path) < SMALL_BYTES:
        return _read_small(path, enums, instants)
    return read_fast(path, enums, instants)


def _read_small(path: Source, enums: Mapping[str, Sequence[str]], instants: Sequence[str]) -> Columns | None:
    """read_fast's contract for a small file, through the exact reader; also None when any
    line is blank or a record spans lines (callers number data rows 2, 3, ... by position)."""
    try:
        raw = read_raw(path, [*enums, *instants])
    except (CsvProblems, OSError):
        return None
    if not np.array_equal(raw.lines, np.arange(2, len(raw) + 2)):
        return None
    out: dict[str, NDArray[np.int64]] = {}
    for c, vocab in enums.items():
        codes = raw.factorize(raw.col(c), list(vocab))
        if (codes < 0).any():
            return None
        out[c] = codes
    for c in instants:
        ts, bad = raw.timestamps(raw.col(c))
        if bad.any():
            return None
        out[c] = ts
    return out


def read_fast(path: Source, enums: Mapping[str, Sequence[str]], instants: Sequence[str]) -> Columns | None:
    """Columns of a plain CSV file (no quotes, no blank or ragged lines, no empty fields) with
    polars' multi-threaded reader: each `enums` column as the index of its value in the
    vocabulary, each `instants` column as epoch seconds (as parse_ts_text reads it).

    Returns None when the file is not plain or a value is not in the vocabulary or not an
    instant: the caller then reads it with read_raw, which names line and field of every
    problem. It never accepts a file read_raw would reject, and agrees with it on every value
    it returns (tests/oracle/test_fast_csv.py)."""
    head = _head(path, 1 << 16)
    head = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if b"\n" not in head or b'"' in head[:head.index(b"\n")]:
        return None
    header = [h.strip() for h in head[:head.index(b"\n")].decode("utf-8", errors="replace").rstrip("\r").split(",")]
    wanted = [*enums, *instants]
    if len(set(header)) != len(header) or any(c not in header for c in wanted):
        return None
    extra = [c for c in header if c not in wanted]
    exprs = [pl.col(c).to_physical() for c in enums]
    exprs += [_instants(pl.col(c), _ZULU_RE, _ZULU_FMT).alias(c) for c in instants]
    if extra:  # empty fields (read as null) and quotes are for the exact reader
        exprs.append(pl.any_horizontal(*(pl.col(c).is_null() | pl.col(c).str.contains('"', literal=True)
                                         for c in extra)).alias("\0bad"))

    def scan(exprs: list[pl.Expr]) -> pl.DataFrame:
        schema = {c: pl.Enum(list(enums[c])) if c in enums else pl.String for c in header}
        source = io.BytesIO(path.data) if isinstance(path, MemFile) else path
        return pl.scan_csv(source, schema=schema, has_header=True, quote_char=None, glob=False,
                           truncate_ragged_lines=False).select(exprs).collect(engine="streaming")

    try:
        df = scan(exprs)
        if extra and df["\0bad"].any():
            return None
        out: dict[str, NDArray[np.int64]] = {}
        for c in enums:
            if df[c].null_count():
                return None
            out[c] = df[c].to_numpy().astype(np.int64)
        for c in instants:
            t = df[c]
            if not t.null_count():
                out[c] = t.to_numpy().astype(np.int64, copy=False)
                continue
            # Other forms (offsets, ...): a second pass over the text of just those rows.
            idx = np.flatnonzero(t.is_null().to_numpy())
            rest = fast_instants(scan([pl.col(c)]).to_series().gather(idx))
            if rest is None:
                return None
            out[c] = t.fill_null(0).to_numpy().astype(np.int64)
            out[c][idx] = rest
    except (pl.exceptions.PolarsError, OSError, ValueError):
        return None  # unknown value, ragged line, bad UTF-8, ...: the exact reader says which
    return out
