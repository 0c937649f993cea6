"""The oracle node's database: SQLAlchemy Core tables and an engine from a URL. SQLite (one file,
WAL, synchronous=FULL) by default; a PostgreSQL URL goes through the same code (only the
insert-or-ignore construct is picked per dialect)."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from functools import lru_cache, partial
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Compiled, Connection, Dialect, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.functions import GenericFunction

metadata = MetaData()

# Where rows came from: one row per ingested file (or HTTP batch), keyed by its content hash.
sources = Table(
    "sources", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agreement", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", Text, nullable=False),  # file path, or "http:<caller>"
    Column("sha256", String(64), nullable=False),
    Column("accepted", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("quarantined", Integer, nullable=False, default=0),
    Column("ingested_at", BigInteger, nullable=False),
    UniqueConstraint("agreement", "kind", "sha256", name="uq_source_content"),
)

def _provenance() -> list[Column[int]]:
    """The columns saying where a row came from (a fresh pair for each table)."""
    return [Column("source_id", Integer, ForeignKey("sources.id"), nullable=False),
            Column("line", Integer, nullable=False)]

devices = Table(
    "devices", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agreement", String(128), nullable=False),
    Column("device_id", String(200), nullable=False),
    Column("site_id", String(200), nullable=False),
    Column("weight", Integer, nullable=False),
    Column("deployed_at", BigInteger, nullable=False),
    Column("retired_at", BigInteger),
    *_provenance(),
    UniqueConstraint("agreement", "device_id", name="uq_device"),
)

# One row per device and instant, keyed by the device's integer id (devices.id is unique per
# agreement and device_id) and with the state as its index in oracle.evidence.load.STATES: a single
# B-tree of small integer keys (no rowid on SQLite), so bulk ingest is an append in key order.
# Per-agreement queries join devices (or seek device by device through the primary key).
events = Table(
    "events", metadata,
    Column("device", Integer, ForeignKey("devices.id"), primary_key=True, autoincrement=False),
    Column("ts", BigInteger, primary_key=True, autoincrement=False),
    Column("state", SmallInteger, nullable=False),  # index into oracle.evidence.load.STATES
    *_provenance(),
    sqlite_with_rowid=False,
)

exclusions = Table(
    "exclusions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agreement", String(128), nullable=False),
    Column("start_ts", BigInteger, nullable=False),
    Column("end_ts", BigInteger, nullable=False),
    Column("scope", String(250), nullable=False),
    Column("reason", Text, nullable=False),
    *_provenance(),
    UniqueConstraint("agreement", "start_ts", "end_ts", "scope", "reason", name="uq_exclusion"),
)

tickets = Table(
    "tickets", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agreement", String(128), nullable=False),
    Column("ticket_id", String(200), nullable=False),
    Column("site_id", String(200), nullable=False),
    Column("severity", String(100), nullable=False),
    Column("opened_at", BigInteger, nullable=False),
    Column("responded_at", BigInteger),
    Column("resolved_at", BigInteger),
    *_provenance(),
    UniqueConstraint("agreement", "ticket_id", name="uq_ticket"),
)

# Rows that could not be accepted, with the reason; `resolved_at` is set when a later ingest
# (e.g. the inventory that names an unknown device) lets them in.
quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agreement", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("source_id", Integer, ForeignKey("sources.id"), nullable=False),
    Column("file", Text, nullable=False),
    Column("line", Integer, nullable=False),
    Column("field", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", Text, nullable=False),  # the row as JSON
    Column("created_at", BigInteger, nullable=False),
    Column("resolved_at", BigInteger),
    Index("ix_quarantine_open", "agreement", "resolved_at"),
)

# The outbox: one row per agreement and period, its state written before each step.
reports = Table(
    "reports", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agreement", String(128), nullable=False),
    Column("address", String(42), nullable=False),
    Column("period", Integer, nullable=False),
    Column("label", String(7), nullable=False),
    Column("state", String(24), nullable=False),
    Column("bundle_id", String(64)),
    Column("terms_hash", String(66)),
    Column("evidence_root", String(66)),
    Column("attainments", Text),  # packed, hex
    Column("digest", String(66)),
    Column("config", Text),  # packed Config the report was signed under, hex
    Column("credit", String(40)),
    Column("signatures", Text),  # packed, hex (once >= threshold collected)
    Column("tx_hash", String(66)),  # the mined (or latest) transaction
    Column("block_number", BigInteger),
    Column("error", Text),  # last error (decoded custom error for reverts)
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("agreement", "period", name="uq_report"),
)

signatures = Table(
    "signatures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(42), nullable=False),  # agreement address
    Column("period", Integer, nullable=False),
    Column("digest", String(66), nullable=False),
    Column("oracle", String(42), nullable=False),
    Column("signature", String(132), nullable=False),
    Column("origin", Text, nullable=False),  # "local" or the peer URL it was fetched from
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("address", "period", "digest", "oracle", name="uq_signature"),
)

# Every signed transaction, written before it is broadcast (so a restart can rebroadcast the
# very same bytes, or replace it at the same nonce, but never send a second one).
tx_attempts = Table(
    "tx_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("report_id", Integer, ForeignKey("reports.id")),  # NULL for nonce-gap fillers
    Column("sender", String(42), nullable=False),
    Column("nonce", BigInteger, nullable=False),
    Column("gas", BigInteger, nullable=False),
    Column("tx_hash", String(66), nullable=False, unique=True),
    Column("raw", Text, nullable=False),
    Column("max_fee", String(40), nullable=False),
    Column("priority_fee", String(40), nullable=False),
    Column("status", String(16), nullable=False),  # pending | mined | reverted | replaced | dropped
    Column("sent_at", BigInteger, nullable=False),
    Column("block_number", BigInteger),
    Column("error", Text),
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, synchronous: str = "FULL") -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: bulk ingest keeps its index pages in memory
    cur.close()


def connect(url: str, sync_commits: bool = True) -> Engine:
    """An engine for `url` with the schema created (SQLite file or PostgreSQL).

    `sync_commits=False` (SQLite): a commit does not wait for the disk (WAL, synchronous=NORMAL).
    It survives the process being killed, not a power cut, until the next synchronous commit of
    any connection, which makes every earlier one durable (the WAL is written in order). For
    the node's workers, which ingest inbox files only: the files stay in the inbox (a lost
    ingest is redone on the next pass), and the report closing a period is committed
    synchronously, after the rows its bundle froze."""
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        if engine.url.database and engine.url.database != ":memory:":
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas if sync_commits else partial(_sqlite_pragmas,
                                                                                    synchronous="NORMAL"))
    metadata.create_all(engine)
    _check_layout(engine, url)
    return engine


class SchemaError(RuntimeError):
    """The database was created by an older layout this version cannot read."""


def _check_layout(engine: Engine, url: str) -> None:
    """create_all leaves existing tables alone: fail with a clear message, not a SQL error
    later, when a table has another layout than this version's."""
    found = inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in found.get_columns(table.name)}
        missing = sorted(set(table.columns.keys()) - have)
        if missing:
            raise SchemaError(f"{engine.url.render_as_string(hide_password=True)}: table {table.name!r} has an older "
                              f"layout (no column {', '.join(missing)}); this version needs a new database: move the "
                              "old file aside (or drop its tables) and re-ingest the evidence")


def _insert_ignore(dialect: str, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING into `table`, in `dialect`."""
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    raise ValueError(f"unsupported database {dialect!r} (sqlite or postgresql)")  # pragma: no cover


def lock_agreements(conn: Connection, keys: Iterable[str]) -> None:
    """Serialise this transaction with the others that ingest rows for, or freeze periods of, these
    agreements, until it ends. SQLite has one writer at a time already (the write lock is taken by
    the transaction's first write); PostgreSQL takes a transaction-scoped advisory lock per
    agreement, in a fixed order."""
    if conn.dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        lock = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        conn.execute(select(func.pg_advisory_xact_lock(lock)))


def insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, in the engine's dialect."""
    if not rows:
        return
    conn.execute(_insert_ignore(conn.engine.dialect.name, table), rows)


@lru_cache(maxsize=64)
def insert_ignore_rows(dialect: str, table: Table) -> Any:
    """`insert_ignore`'s statement with a bound parameter for every column but a generated `id`,
    for `execute_many` (each row must give every column)."""
    return _insert_ignore(dialect, table).values({c.name: bindparam(c.name) for c in table.columns if c.name != "id"})


@lru_cache(maxsize=64)
def _compiled(stmt: Executable, dialect: Dialect) -> Compiled:
    return stmt.compile(dialect=dialect)  # type: ignore[attr-defined,no-any-return]  # every statement compiles


def fetch_tuples(conn: Connection, stmt: Executable, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """The rows of a SELECT as the driver's plain tuples: the statement is compiled once per
    dialect (keep it in a module constant, values as `bindparam`s given in `params`) and run on
    the connection's DB-API cursor, skipping the per-row Row objects (a month of a device
    estate's events is millions of rows). Column types with result processing (dates,
    decimals) come back as the driver gives them: use it for integers and text."""
    compiled = _compiled(stmt, conn.dialect)
    values = compiled.construct_params(params)
    args: Any = values
    if compiled.positional:  # type: ignore[attr-defined]  # a SQLCompiler: positional drivers (psycopg)
        args = tuple(values[n] for n in compiled.positiontup or ())  # type: ignore[attr-defined,index]
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


@lru_cache(maxsize=64)
def _compiled_dml(stmt: Executable, dialect: Dialect) -> tuple[str, Any]:
    """The SQL of `stmt` in `dialect`, and a function from a row's dict to the driver's parameters."""
    compiled = stmt.compile(dialect=dialect, for_executemany=True)  # type: ignore[attr-defined]
    if not compiled.positional:
        return str(compiled), None
    names = tuple(compiled.positiontup or ())
    return str(compiled), itemgetter(*names) if len(names) > 1 else lambda r: tuple(r[n] for n in names)


def execute_many(conn: Connection, stmt: Executable, rows: list[dict[str, Any]]) -> None:
    """An INSERT or UPDATE whose every value is a `bindparam` given in each of `rows` (no column
    defaults are applied), compiled once per dialect and run on the connection's DB-API cursor,
    like `fetch_tuples`: SQLAlchemy's own work for each statement costs several times what running
    a small one does."""
    if not rows:
        return
    sql, args = _compiled_dml(stmt, conn.dialect)
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(sql, rows if args is None else list(map(args, rows)))
    finally:
        cursor.close()


class comma_list(GenericFunction[str]):  # noqa: N801 - SQL function naming
    """Aggregate: the group's texts joined by commas, in no promised order (SQLite
    group_concat, PostgreSQL string_agg)."""
    type = Text()
    inherit_cache = True


@compiles(comma_list, "sqlite")
def _comma_list_sqlite(element: comma_list, compiler: Any, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


@compiles(comma_list, "postgresql")
def _comma_list_postgresql(element: comma_list, compiler: Any, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, ',')"


def now() -> int:
    return int(time.time())
