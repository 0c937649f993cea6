"""Columnar CSV readers for evidence files.

`read_raw` is the exact reader: the bytes of a file plus the span of every field, decoded
column by column with numpy and with exact line numbers for error messages (quoted files go
through the `csv` module, as `csv_rows`, the record reader of row-by-row ingest). The polars
fast path for large plain files is `oracle.evidence.csv_fast`; it gives up on anything else, so
the exact reader stays the one that decides what is wrong and where."""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]
Columns = dict[str, I64]  # column name -> values (enum indices, instants, integers)

# ISO-8601 / RFC 3339 instants with a mandatory offset; fractional seconds are truncated.
TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))$"
)
_VECTOR_MIN_ROWS = 64
_GOLDEN, _ONES = np.uint64(0x9E3779B97F4A7C15), np.uint64(2**64 - 1)


@dataclass(frozen=True)
class MemFile:
    """A CSV file held in memory (a bundle's member, an export), read like one on disk."""

    name: str
    data: bytes


Source = Path | MemFile


def source_size(src: Source) -> int:
    return len(src.data) if isinstance(src, MemFile) else src.stat().st_size


def _head(src: Source, n: int) -> bytes:
    if isinstance(src, MemFile):
        return src.data[:n]
    with src.open("rb") as f:
        return f.read(n)


class CsvProblem(Exception):
    """A problem at a line of a CSV file (the evidence layer turns it into an EvidenceError)."""

    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(f"line {line}: {field}: {message}")
        self.line, self.field, self.message = line, field, message


def parse_ts_text(text: str) -> int | None:
    """Epoch seconds of an ISO-8601 instant with offset ('Z' or ±HH:MM), None if invalid."""
    m = TS_RE.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s = map(int, m.group(1, 2, 3, 4, 5, 6))
    if m.group(8):
        off = 0
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            return None
        off = (oh * 60 + om) * 60 * (1 if m.group(9) == "+" else -1)
    if h > 23 or mi > 59 or s > 59:  # what datetime() refuses (no leap second)
        return None
    try:
        day = date(y, mo, d).toordinal() - _EPOCH_DAY
    except ValueError:
        return None
    return day * 86400 + h * 3600 + mi * 60 + s - off


_EPOCH_DAY = date(1970, 1, 1).toordinal()


@dataclass
class RawCsv:
    """Field spans of a CSV file. `sep[i, k]` is the position of the separator (comma, or the
    newline for the last column) ending field k of data row i; row i, column k is
    buf[start(k)[i]:end(k)[i]]. `buf` is padded with zero bytes for 8-byte loads."""

    file: str
    header: list[str]
    buf: NDArray[np.uint8]
    sep: I64  # (n, ncols)
    first: int  # start of the first data row
    cr: NDArray[np.bool_] | None  # rows whose line ends with CR LF
    lines: I64  # 1-based line number of each data row

    def start(self, k: int) -> I64:
        if k > 0:
            return self.sep[:, k - 1] + 1
        out = np.empty(len(self), dtype=np.int64)
        if len(out):
            out[0] = self.first
            out[1:] = self.sep[:-1, -1] + 1
        return out

    def end(self, k: int) -> I64:
        e = self.sep[:, k]
        if k == len(self.header) - 1 and self.cr is not None:
            e = e - self.cr
        return e

    @property
    def starts(self) -> list[I64]:
        return [self.start(k) for k in range(len(self.header))]

    @property
    def ends(self) -> list[I64]:
        return [self.end(k) for k in range(len(self.header))]

    def __len__(self) -> int:
        return int(self.lines.shape[0])

    def col(self, name: str) -> int:
        return self.header.index(name)

    def text(self, k: int, rows: NDArray[np.int64] | None = None) -> list[str]:
        """Decode column k (optionally only `rows`) to Python strings."""
        st = self.start(k) if rows is None else self.start(k)[rows]
        en = self.end(k) if rows is None else self.end(k)[rows]
        mv = memoryview(self.buf)  # type: ignore[arg-type]  # numpy arrays are buffers
        return [bytes(mv[a:b]).decode("utf-8", errors="replace") for a, b in zip(st.tolist(), en.tolist())]

    def lengths(self, k: int) -> I64:
        return self.end(k) - self.start(k)

    def factorize(self, k: int, vocab: list[str]) -> NDArray[np.int64]:
        """Index of each row's value of column k in `vocab`, -1 where it is not in it."""
        n = len(self)
        start = self.start(k)
        lens = self.end(k) - start
        width = int(lens.max()) if n else 0
        table = _vocabulary(tuple(vocab)) if n >= _VECTOR_MIN_ROWS and width <= len(_PAD) - 8 else None
        if table is None:
            index = {v: i for i, v in enumerate(vocab)}
            return np.array([index.get(v, -1) for v in self.text(k)], dtype=np.int64)
        vwords, vl, vmax, order, sk = table
        # Candidate by (length, first 8 bytes), then an exact comparison of length and every word.
        nw = max((min(width, vmax) + 7) // 8, 1)  # the words of a field that can be in the vocabulary
        # each field's first nw words, one load per row (the zero padding keeps it in bounds), zero past its end
        rec = np.ndarray((len(self.buf) - 8 * nw + 1,), dtype=f"V{8 * nw}", buffer=self.buf, strides=(1,))
        words = rec[start].view("<u8").reshape(-1, nw)
        ul = lens.astype(np.uint64)
        w0 = words[:, 0] & ~(_ONES << (ul << np.uint64(3)))  # shifts of 64 bits or more give 0
        key = w0 ^ (ul << np.uint64(56)) if vmax <= 7 else w0 * _GOLDEN ^ ul
        pos = np.searchsorted(sk, key)
        np.minimum(pos, len(sk) - 1, out=pos)
        cand = order[pos]
        ok = sk[pos] == key
        ok &= vl[cand] == ul
        for j in range(1, nw):
            rest = np.maximum(lens - 8 * j, 0).astype(np.uint64) << np.uint64(3)
            ok &= vwords[j][cand] == words[:, j] & ~(_ONES << rest)
        return np.where(ok, cand, -1).astype(np.int64, copy=False)

    def timestamps(self, k: int) -> tuple[I64, NDArray[np.bool_]]:
        """Epoch seconds of column k and a mask of rows that are not valid instants."""
        n = len(self)
        out = np.zeros(n, dtype=np.int64)
        fast = np.zeros(n, dtype=bool)
        if n >= _VECTOR_MIN_ROWS:
            fast, out = _fast_timestamps(self.buf, self.start(k), self.lengths(k))
        bad = np.zeros(n, dtype=bool)
        idx = np.flatnonzero(~fast)
        if len(idx):
            for i, s in zip(idx.tolist(), self.text(k, idx)):
                v = parse_ts_text(s)
                if v is None:
                    bad[i] = True
                else:
                    out[i] = v
        return out, bad


_Vocabulary = tuple[NDArray[np.uint64], NDArray[np.uint64], int, I64, NDArray[np.uint64]]


@lru_cache(maxsize=16)
def _vocabulary(vocab: tuple[str, ...]) -> _Vocabulary | None:
    """For RawCsv.factorize: each entry's 8-byte words (a row per word), lengths, the longest
    length, and the entries' lookup keys (length and first word) sorted with their order. None
    when the exact Python lookup must be used (an empty vocabulary, a NUL byte in an entry, or
    two entries with the same key)."""
    vocab_b = [v.encode() for v in vocab]
    if not vocab_b or any(b"\0" in v for v in vocab_b):
        return None
    vmax = max(len(v) for v in vocab_b)
    nw = max((vmax + 7) // 8, 1)
    vwords = np.array([[int.from_bytes(v[8 * j:8 * j + 8].ljust(8, b"\0"), "little") for j in range(nw)]
                       for v in vocab_b], dtype=np.uint64).reshape(len(vocab_b), nw).T.copy()
    vl = np.array([len(v) for v in vocab_b], dtype=np.uint64)
    vkey = vwords[0] ^ (vl << np.uint64(56)) if vmax <= 7 else vwords[0] * _GOLDEN ^ vl
    order = np.argsort(vkey)
    sk = vkey[order]
    if len(sk) > 1 and (np.diff(sk) == 0).any():
        return None
    for a in (vwords, vl, order, sk):
        a.flags.writeable = False
    return vwords, vl, vmax, order, sk


def _words(buf: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """Every unaligned little-endian 8-byte word of buf: words[i] = bytes i..i+7."""
    return np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))


def _b(w: NDArray[np.uint64], k: int) -> NDArray[np.int64]:
    return ((w >> np.uint64(8 * k)) & np.uint64(0xFF)).view(np.int64)


_YEAR0, _YEARS = 1970, 400
# Days from 1970-01-01 to the first of each month, for the years the fast path reads.
_MONTH_DAYS = np.array([
    (date(_YEAR0 + i // 12, i % 12 + 1, 1) - date(1970, 1, 1)).days for i in range(_YEARS * 12)
], dtype=np.int64)


_CHUNK = 1 << 20


def _lanes(*ks: int) -> int:
    return sum(0xFF << (8 * k) for k in ks)


_U = np.uint64
_ZERO, _SEVENS = _U(0x3030303030303030), _U(0x7676767676767676)  # b"0" * 8; 0x76 + a digit < 0x80
_DIGITS = [_lanes(0, 1, 2, 3, 5, 6), _lanes(0, 1, 3, 4, 6, 7), _lanes(1, 2), _lanes(4, 5, 7)]
_DIG = [_U(m) for m in _DIGITS]  # the digits' bytes: YYYY-MM-, DDTHH:MM, :SS, +HH:M(M)
_TOP = [_U(0x8080808080808080 & m) for m in _DIGITS]
_PAIRS2 = _U(_lanes(1, 2, 4, 5))  # SS and the offset's HH
_FF = _U(0xFF)
# days from 1970-01-01 to the day before the first of each month, and the days of each month
_DAY0 = _MONTH_DAYS - 1
_MONTH_LEN = np.diff(np.append(_MONTH_DAYS, _MONTH_DAYS[-1] + 31)).astype(np.uint64)


def _fast_timestamps(buf: NDArray[np.uint8], st: I64, lens: I64) -> tuple[NDArray[np.bool_], I64]:
    """Vectorised parse of YYYY-MM-DDTHH:MM:SSZ and ...SS+HH:MM, in chunks of 1M rows, on the
    first 32 bytes of each field as four 8-byte words (one load per row; the digits checked and
    combined in pairs a word at a time). Rows it cannot read are returned as not ok and go to
    the exact parser."""
    V = np.ndarray((len(buf) - 31,), dtype="V32", buffer=buf, strides=(1,))
    n = len(st)
    ok_all = np.zeros(n, dtype=bool)
    out = np.zeros(n, dtype=np.int64)
    for c0 in range(0, n, _CHUNK):
        s = st[c0:c0 + _CHUNK]
        ln = lens[c0:c0 + _CHUNK]
        R = V[s].view("<u8").reshape(-1, 4).T
        r0, r1, r2 = R[0], R[1], R[2]  # "YYYY-MM-", "DDTHH:MM", ":SSZ" or ":SS+HH:M"
        # each byte minus "0" (XOR: a digit becomes 0..9, any other byte something else), digits only
        p0, p1, p2 = (r0 ^ _ZERO) & _DIG[0], (r1 ^ _ZERO) & _DIG[1], (r2 ^ _ZERO) & _PAIRS2
        q2 = p2 & _DIG[2]
        # a byte is 0..9 when neither it nor it + 0x76 has its top bit set
        bad = ((p0 + _SEVENS) | p0) & _TOP[0]
        bad |= ((p1 + _SEVENS) | p1) & _TOP[1]
        bad |= ((q2 + _SEVENS) | q2) & _TOP[2]
        ok = bad == 0
        ok &= (r0 & _U(_lanes(4, 7))) == _U(ord("-") << 32 | ord("-") << 56)
        ok &= (r1 & _U(_lanes(5))) == _U(ord(":") << 40)
        ok &= (r2 & _FF) == _U(ord(":"))
        sep = (r1 >> _U(16)) & _FF
        ok &= ((sep | _U(0x20)) == _U(ord("t"))) | (sep == _U(ord(" ")))  # T, t or space
        c19 = (r2 >> _U(24)) & _FF
        zulu = (ln == 20) & ((c19 | _U(0x20)) == _U(ord("z")))  # Z or z
        offs = (ln == 25) & ((c19 == _U(ord("+"))) | (c19 == _U(ord("-"))))
        # tens * 10 + units in the byte of the tens digit, for every pair of digits of a word
        u0 = p0 * _U(10) + (p0 >> _U(8))
        u1 = p1 * _U(10) + (p1 >> _U(8))
        u2 = p2 * _U(10) + (p2 >> _U(8))
        y = (u0 & _FF) * _U(100) + ((u0 >> _U(16)) & _FF)
        mo, d = (u0 >> _U(40)) & _FF, u1 & _FF
        hh, mi, ss = (u1 >> _U(24)) & _FF, (u1 >> _U(48)) & _FF, (u2 >> _U(8)) & _FF
        off_s = None
        if offs.any():
            o2 = (r2 ^ _ZERO) & _DIG[3]
            o3 = (R[3] ^ _ZERO) & _FF
            offs &= ((((o2 + _SEVENS) | o2) & _TOP[3]) == 0) & (o3 <= _U(9))
            offs &= ((r2 >> _U(48)) & _FF) == _U(ord(":"))
            oh, om = (u2 >> _U(32)) & _FF, (o2 >> _U(56)) * _U(10) + o3
            offs &= (oh <= _U(23)) & (om <= _U(59))
            off_s = np.where(offs, (oh * _U(3600) + om * _U(60)).view(np.int64), 0)
            np.negative(off_s, out=off_s, where=c19 == _U(ord("-")))
        ok &= zulu | offs
        # months since January _YEAR0 (wrapping around, so out of range, for earlier years or month 0)
        month = (y - _U(_YEAR0)) * _U(12) + (mo - _U(1))
        ok &= (month < _U(_YEARS * 12)) & (mo - _U(1) < _U(12))
        ok &= (hh <= _U(23)) & (mi <= _U(59)) & (ss <= _U(59))
        month[~ok] = 0
        ok &= d - _U(1) < _MONTH_LEN[month]  # 1 <= d <= the month's days
        secs = (_DAY0[month] + d.view(np.int64)) * 86400 + (hh * _U(3600) + mi * _U(60) + ss).view(np.int64)
        if off_s is not None:
            secs -= off_s
        secs[~ok] = 0
        ok_all[c0:c0 + _CHUNK] = ok
        out[c0:c0 + _CHUNK] = secs
    return ok_all, out


def _mix(words: NDArray[np.uint64], lens: I64) -> NDArray[np.uint64]:
    h = lens.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for w in words:
            h = (h ^ w) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
    return h


def read_raw(path: Source, required: list[str]) -> RawCsv:
    """Read a CSV file with a header row; every row must have as many fields as the header.

    Raises CsvProblems for a missing column or ragged rows."""
    size = source_size(path)
    # Read straight into a zero-padded numpy buffer (no copy of a large file).
    buf = np.zeros(size + 1 + len(_PAD), dtype=np.uint8)
    if isinstance(path, MemFile):
        buf[:size] = np.frombuffer(path.data, dtype=np.uint8)
    else:
        with path.open("rb") as f:
            f.readinto(memoryview(buf)[:size])  # type: ignore[arg-type]  # numpy arrays are buffers
    skip = 3 if bytes(buf[:3]) == b"\xef\xbb\xbf" else 0
    if not bytes(buf[skip:min(size, skip + 4096)]).strip() and not bytes(buf[skip:size]).strip():
        raise CsvProblems([CsvProblem(1, "(header)", "file is empty; a header row is required")])
    if _has_quote(buf, size):
        raw = _read_quoted(path.name, bytes(buf[skip:size]))
    else:
        if size == 0 or buf[size - 1] != 10:
            buf[size] = 10
            size += 1
        raw = _read_plain(path.name, buf, skip, size)
    missing = [c for c in required if c not in raw.header]
    if missing:
        header = ",".join(raw.header)
        raise CsvProblems([CsvProblem(1, c, f"required column is missing (header: {header})") for c in missing])
    dup = sorted({c for c in raw.header if raw.header.count(c) > 1})
    if dup:
        raise CsvProblems([CsvProblem(1, c, "column appears twice in the header") for c in dup])
    return raw


class CsvProblems(Exception):
    def __init__(self, problems: list[CsvProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems[:5]))
        self.problems = problems


def _ragged(header: list[str], line: int, found: int) -> CsvProblem:
    field = header[found] if found < len(header) else "(extra field)"
    return CsvProblem(line, field, f"expected {len(header)} fields ({','.join(header)}), found {found}")


_PAD = b"\0" * 32


def _has_quote(buf: NDArray[np.uint8], size: int) -> bool:
    mv = memoryview(buf)  # type: ignore[arg-type]  # numpy arrays are buffers
    return any(bytes(mv[i:min(i + (1 << 20), size)]).find(b'"') >= 0 for i in range(0, size, 1 << 20))


def _read_plain(name: str, buf: NDArray[np.uint8], begin: int, size: int) -> RawCsv:
    """buf[begin:size] is the file (ending in a newline), followed by zero padding."""
    newline = buf[begin:size] == 10
    hdr_end = begin + int(np.argmax(newline))
    header = [h.strip() for h in bytes(buf[begin:hdr_end]).decode("utf-8", errors="replace").rstrip("\r").split(",")]
    ncols = len(header)
    first = hdr_end + 1
    core, core_nl = buf[first:size], newline[first - begin:]
    is_sep = core == 44
    is_sep |= core_nl
    seps = np.flatnonzero(is_sep).astype(np.int64, copy=False)
    seps += first
    if len(seps) % ncols == 0:
        sep = seps.reshape(-1, ncols)
        # every row's last separator is a newline and no other one is (so all others are commas)
        if (buf[sep[:, -1]] == 10).all() and np.count_nonzero(core_nl) == len(sep):
            # a blank line (with more than one column it would have failed the test above)
            if ncols > 1 or not (sep[:, 0] == np.concatenate([[first], sep[:-1, 0] + 1])).any():
                cr = buf[np.maximum(sep[:, -1] - 1, 0)] == 13 if (core == 13).any() else None
                lines = np.arange(2, len(sep) + 2, dtype=np.int64)
                return RawCsv(name, header, buf, sep, first, cr if cr is not None and cr.any() else None, lines)
    return _read_lines(name, bytes(buf[begin:size]), header)


def _read_lines(name: str, body: bytes, header: list[str]) -> RawCsv:
    """Line-by-line check for blank lines and ragged rows; rebuilds the fast layout."""
    ncols = len(header)
    problems: list[CsvProblem] = []
    rows: list[bytes] = []
    lines: list[int] = []
    for no, line in enumerate(body.split(b"\n")[1:], start=2):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        found = line.count(b",") + 1
        if found != ncols:
            problems.append(_ragged(header, no, found))
            if len(problems) >= 20:
                break
            continue
        rows.append(line)
        lines.append(no)
    if problems:
        raise CsvProblems(problems)
    return _from_rows(name, header, rows, lines)


def _from_rows(name: str, header: list[str], rows: list[bytes], lines: list[int]) -> RawCsv:
    body = b"".join(r + b"\n" for r in rows)
    buf = np.frombuffer(body + _PAD, dtype=np.uint8)
    core = buf[:len(body)]
    sep = np.flatnonzero((core == 44) | (core == 10)).astype(np.int64).reshape(-1, len(header))
    return RawCsv(name, header, buf, sep, 0, None, np.array(lines, dtype=np.int64))


def csv_rows(text: str) -> tuple[list[str] | None, Iterator[tuple[int, list[str] | CsvProblem]]]:
    """The header of CSV text (None when there is none) and its records after it: (the record's
    first line, its cells), or a CsvProblem for a row with another number of fields than the
    header. Blank records are skipped; quoted fields may hold commas and newlines. The one
    record reader: the columnar reader falls back to it for quoted files, and row-by-row
    ingest (`oracle.evidence.rows`) reads with it."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return None, iter(())
    names = [h.strip() for h in header]

    def records() -> Iterator[tuple[int, list[str] | CsvProblem]]:
        start_line = reader.line_num + 1
        for row in reader:
            line, start_line = start_line, reader.line_num + 1
            if not row or row == [""]:
                continue
            yield line, _ragged(names, line, len(row)) if len(row) != len(names) else row

    return names, records()


def _read_quoted(name: str, data: bytes) -> RawCsv:
    """Quoted fields (which may hold commas or newlines) go through the csv module."""
    header, records = csv_rows(data.decode("utf-8", errors="replace"))
    fields: list[list[str]] = []
    lines: list[int] = []
    problems: list[CsvProblem] = []
    for line, row in records:
        if isinstance(row, CsvProblem):
            problems.append(row)
            continue
        fields.append(row)
        lines.append(line)
    if problems:
        raise CsvProblems(problems)
    assert header is not None
    # Lay the decoded fields out unquoted, with separators replaced by a private marker.
    ncols = len(header)
    parts: list[bytes] = []
    sep: list[int] = []
    pos = 0
    for row in fields:
        for k, f in enumerate(row):
            b = f.encode()
            parts.append(b + (b"\n" if k == ncols - 1 else b","))
            pos += len(b)
            sep.append(pos)
            pos += 1
    buf = np.frombuffer(b"".join(parts) + _PAD, dtype=np.uint8)
    return RawCsv(name, header, buf, np.array(sep, dtype=np.int64).reshape(-1, ncols), 0, None,
                  np.array(lines, dtype=np.int64))
