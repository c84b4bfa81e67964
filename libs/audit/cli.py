"""Command-line audit verifier and exporter.

    python -m libs.audit.cli verify --db sqlite:////var/lib/causeway/registry.db [--key-file K]
    python -m libs.audit.cli verify --jsonl export.jsonl [--key-file K]
    python -m libs.audit.cli export --db URL > audit.jsonl

`verify` exits 0 when the chain is intact, 1 with the first broken event and what happened to it
(edited, deleted, inserted, reordered), 2 on usage errors. An exported JSON-lines file can be
verified offline by an auditor who never touches the database.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from libs.audit.events import AuditEvent
from libs.audit.store import SqlAuditStore
from libs.audit.verify import verify_chain


def _read_jsonl(path: Path) -> Iterator[AuditEvent]:
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield AuditEvent.from_dict(json.loads(line))
                except (ValueError, TypeError) as err:
                    raise SystemExit(f"{path}:{number}: not an audit event: {err}") from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="causeway-audit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="verify the hash chain")
    source = verify.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", help="SQLAlchemy URL of the audit database")
    source.add_argument("--jsonl", type=Path, help="an exported JSON-lines file")
    verify.add_argument("--key-file", type=Path, help="the audit sealing key, to check seals too")
    export = sub.add_parser("export", help="print every event as a JSON line")
    export.add_argument("--db", required=True)
    args = parser.parse_args(argv)

    if args.command == "export":
        for event in SqlAuditStore(args.db).scan():
            print(event.to_json_line())
        return 0

    key = args.key_file.read_bytes().strip() if args.key_file else None
    if args.db:
        store = SqlAuditStore(args.db)
        verdict = verify_chain(store.scan(), head=store.head(), key=key)
    else:
        verdict = verify_chain(_read_jsonl(args.jsonl), key=key)
    if verdict.ok:
        print(f"OK: {verdict.message}")
        return 0
    problem = verdict.problem.value if verdict.problem else "unknown"
    print(f"BROKEN: {problem} at event {verdict.seq}: {verdict.message}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
