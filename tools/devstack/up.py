"""`./dev up`: start the whole platform on this machine and walk the golden path through it.

    ./dev up            # start, run the golden path, keep serving until Ctrl-C
    ./dev up --once     # start, run the golden path, stop (what the e2e test does)

State lives in var/devstack (sqlite files, artifacts, the local GitOps repository, logs); the CLI
finds the running stack through var/devstack/stack.json:
    bazel-bin/tools/cli/causeway --as alice ...
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from tools.devstack import golden_path
from tools.devstack.services import all_services
from tools.devstack.stack import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dev up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, default=Path("var/devstack"))
    parser.add_argument("--binaries", type=Path, default=Path("bazel-bin"), help="where the service binaries are")
    parser.add_argument("--once", action="store_true", help="stop after the golden path")
    parser.add_argument("--skip-golden-path", action="store_true")
    args = parser.parse_args(argv)

    started = time.monotonic()
    with Stack(args.state, args.binaries.resolve()) as stack:
        for spec in all_services():
            process = stack.start(spec)
            print(f"started {spec.name:<12} {process.address}  (pid {process.pid})", flush=True)
        print(f"stack up in {time.monotonic() - started:.1f} s; state in {stack.state_dir}", flush=True)
        if not args.skip_golden_path:
            golden_path.run(stack.state_dir, stack.state_dir / "work", say=lambda line: print("  " + line, flush=True))
            print(f"golden path done in {time.monotonic() - started:.1f} s", flush=True)
        if args.once:
            return 0
        print(
            "serving; try: bazel-bin/tools/cli/causeway --as alice infer tox21 --env dev --input "
            "features='[[0,0,0,0,0,0,0,0,0,0,0,0]]'   (Ctrl-C stops)",
            flush=True,
        )
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
