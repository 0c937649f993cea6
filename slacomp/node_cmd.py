"""`slacomp oracle ...`: the oracle node's subcommands, thin shells over `oracle.node.loop`.

    slacomp oracle ingest  --config C --agreement A FILE...   ingest CSV/JSONL files
    slacomp oracle close   --config C [--agreement A]         close + sign due periods (no submit)
    slacomp oracle submit  --config C [--agreement A]         send signed reports (closes nothing new)
    slacomp oracle run     --config C [--once]                the service loop
    slacomp oracle status  --config C                         outbox and quarantine as JSON
    slacomp oracle keystore --out FILE                         encrypt a key (SLACOMP_ORACLE_KEY) into a keystore
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="oracle_command", required=True)
    for name, help_ in (("ingest", "ingest evidence files (CSV/JSONL) into the node's database"),
                        ("close", "close and sign every due period (does not submit)"),
                        ("submit", "send the signed reports through the outbox (closes no new period)"),
                        ("run", "run the service loop until SIGTERM"),
                        ("status", "print the outbox and quarantine as JSON")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", help="settings file (TOML or YAML); env SLACOMP_ORACLE_* overrides")
        if name == "ingest":
            p.add_argument("--agreement", required=True, help="agreement address or id from the settings")
            p.add_argument("--kind", choices=("devices", "events", "exclusions", "tickets"),
                           help="default: from the file name")
            p.add_argument("files", nargs="+")
        if name in ("close", "submit"):
            p.add_argument("--agreement", help="only this agreement")
        if name == "run":
            p.add_argument("--once", action="store_true", help="one pass, then exit")
    p = sub.add_parser("keystore", help="encrypt the private key in $SLACOMP_ORACLE_KEY into a keystore file")
    p.add_argument("--out", required=True)
    p.add_argument("--password-env", default="SLACOMP_KEYSTORE_PASSWORD")
    p.add_argument("--password-file")


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[], None]]:
    """`advance()` for a rich progress bar on stderr when it is a terminal; a no-op
    otherwise, so JSON logs and captured output never carry bar frames."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        yield lambda: bar.advance(task)


def run(args: argparse.Namespace) -> int:
    from oracle.chain.keystore import KeystoreError
    from oracle.node.loop import ServiceError
    from oracle.node.settings import SettingsError
    from oracle.store.ingest import IngestError
    try:
        return _dispatch(args)
    except (SettingsError, KeystoreError, IngestError, ServiceError) as exc:
        print(f"slacomp oracle: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    from oracle.chain.keystore import KeystoreError, create_keystore, read_password
    from oracle.node.loop import Pass, Service, ServiceError, configure_logging
    from oracle.node.settings import load_settings

    if args.oracle_command == "keystore":
        key = os.environ.pop("SLACOMP_ORACLE_KEY", None)
        if not key:
            raise KeystoreError("put the private key in $SLACOMP_ORACLE_KEY (it is never taken from the command line)")
        address = create_keystore(args.out, key, read_password(args.password_env, args.password_file))
        print(json.dumps({"address": address, "keystore": args.out}))
        return 0
    configure_logging()
    settings = load_settings(args.config)
    service = Service(settings)
    try:
        if args.oracle_command == "ingest":
            results = []
            with progress_bar("ingest", len(args.files)) as advance:
                for path in args.files:  # one file at a time: each is its own transaction anyway
                    results += service.ingest(args.agreement, [path], args.kind)
                    advance()
            print(json.dumps([r.to_dict() for r in results], indent=2))
            return 0
        if args.oracle_command in ("close", "submit"):
            close = args.oracle_command == "close"
            chosen = [a for a in service.served.values()
                      if args.agreement in (None, a.spec.key, a.address, a.address.lower(), a.spec.id)]
            if not chosen:
                raise ServiceError(f"this node does not serve agreement {args.agreement!r}")
            with progress_bar(args.oracle_command, len(chosen)) as advance:
                for a in chosen:
                    service.serve_agreement(a, Pass.CLOSE if close else Pass.SEND)
                    advance()
            print(json.dumps(service.status(), indent=2))
            return 0
        if args.oracle_command == "status":
            print(json.dumps(service.status(), indent=2))
            return 0
        if args.oracle_command == "run":
            if args.once:
                with progress_bar("agreements", len(service.served)) as advance:
                    service.tick(progress=lambda key: advance())
                print(json.dumps(service.status(), indent=2))
                return 0
            service.run()
            return 0
    finally:
        service.close()
    return 2

