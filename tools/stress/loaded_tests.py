#!/usr/bin/env python3
"""Run `bazel test` while the machine is busy, and count what failed or flaked.

    python3 tools/stress/loaded_tests.py                      # //... --runs_per_test=3, 2 busy processes
    python3 tools/stress/loaded_tests.py --busy 2 --runs 3 -- //services/gpu_runner/...

Starts `--busy` processes that spin on a core each (what a shared CI host looks like), runs
`bazel test` with `--runs_per_test`, and stops the busy processes by PID however the run ends. It
prints one line per target that failed at least once (with how many of its runs failed) and a
summary; it exits non-zero when any run failed. Standard library only: run it with any Python 3.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

SPIN = "import os\nos.nice(0)\nwhile True:\n    pass\n"
# Bazel's per-run lines with --runs_per_test: "  FAILED in 3 out of 3 in 12.3s" follow a target line.
TARGET_LINE = re.compile(r"^(//\S+)\s+(PASSED|FAILED|FLAKY|TIMEOUT|NO STATUS)\b")
OUT_OF = re.compile(r"(FAILED|TIMEOUT) in (\d+) out of (\d+)")


def start_busy(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN], start_new_session=True) for _ in range(count)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def summarize(log: str) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """Per target: its final status, and for those that failed at least once: (failed, runs)."""
    status: dict[str, str] = {}
    failures: dict[str, tuple[int, int]] = {}
    current = ""
    for line in log.splitlines():
        match = TARGET_LINE.match(line.strip())
        if match:
            current = match.group(1)
            status[current] = match.group(2)
            inline = OUT_OF.search(line)
            if inline:
                failures[current] = (int(inline.group(2)), int(inline.group(3)))
            continue
        counted = OUT_OF.search(line)
        if counted and current:
            failed, runs = failures.get(current, (0, 0))
            failures[current] = (failed + int(counted.group(2)), max(runs, int(counted.group(3))))
    return status, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=2, help="busy-spinning processes to start (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="--runs_per_test (default 3)")
    parser.add_argument("--log", type=Path, help="also write bazel's output here")
    parser.add_argument("targets", nargs="*", default=["//..."])
    args = parser.parse_args()

    command = ["bazel", "test", f"--runs_per_test={args.runs}", "--test_summary=short", *args.targets]
    busy = start_busy(args.busy)
    print(f"loaded_tests: {args.busy} busy processes (pids {[p.pid for p in busy]}); {' '.join(command)}", flush=True)
    started = time.monotonic()
    try:
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finally:
        stop_busy(busy)
    elapsed = time.monotonic() - started
    if args.log:
        args.log.write_text(result.stdout)
    status, failures = summarize(result.stdout)
    failed_runs = sum(f for f, _ in failures.values())
    for target, (failed, runs) in sorted(failures.items()):
        print(f"  {target}: {failed} of {runs} runs failed ({status.get(target, '?')})")
    print(
        f"loaded_tests: {len(status)} targets x {args.runs} runs under {args.busy} busy processes in {elapsed:.0f} s: "
        f"{len(failures)} targets with failed runs, {failed_runs} failed runs; bazel exit {result.returncode}"
    )
    if result.returncode != 0 and not failures:
        print(result.stdout[-4000:])
    return 1 if result.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
