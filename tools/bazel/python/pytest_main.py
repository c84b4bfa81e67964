"""Entry point of every `py_pytest` target: runs pytest on the test's own source files.

Bazel passes the files through CAUSEWAY_PYTEST_FILES (runfiles-relative); results go to the JUnit
XML file Bazel asks for, so `bazel test` shows per-case results.

No test passes by being skipped: a run in which any test is skipped (or xfailed) fails and lists
them; a test that truly cannot run must fail and say why.

CAUSEWAY_TEST_USER (the macro's `run_as`) says who runs the tests:
  "root"    the tests need root; run by anyone else, the target fails saying so.
  "<uid>"   run as that unprivileged uid (as a service in a pod does). Bazel runs tests as the
            invoking user, so as root this copies the runfiles (Bazel keeps them under root's 0700
            home) to a directory that uid can read and re-runs itself there through setpriv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

SETPRIV = "/usr/bin/setpriv"


class NoSkips:
    """Collects the tests that were skipped or xfailed, so the run can fail on them."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.skipped:
            why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            kind = "xfailed" if hasattr(report, "wasxfail") else "skipped"
            self.skipped.append(f"{report.nodeid} ({kind}: {why})")


def run_pytest() -> int:
    files = [f for f in os.environ.get("CAUSEWAY_PYTEST_FILES", "").split(",") if f]
    if not files:
        print("py_pytest: no test files given", file=sys.stderr)
        return 2
    args = ["-p", "no:cacheprovider", "-q", "--strict-markers", "-rs", *files]
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        args.append(f"--junitxml={xml}")
    if os.environ.get("TESTBRIDGE_TEST_ONLY"):
        args += ["-k", os.environ["TESTBRIDGE_TEST_ONLY"]]
    args += sys.argv[1:]
    guard = NoSkips()
    code = int(pytest.main(args, plugins=[guard]))
    if guard.skipped:
        print(
            f"py_pytest: FAILED: {len(guard.skipped)} test(s) did not run; a test that cannot run here must fail "
            "and say why, not skip:\n  " + "\n  ".join(guard.skipped),
            file=sys.stderr,
        )
        return code or 1
    return code


def _rewrite(value: str, old_roots: list[str], new_root: str) -> str:
    for old in old_roots:
        value = value.replace(old, new_root)
    return value


def run_as_uid(uid: int) -> int:
    """Re-run this test as `uid` from a copy of the runfiles that `uid` can read."""
    if not (os.path.isfile(SETPRIV) and os.access(SETPRIV, os.X_OK)):
        print(f"py_pytest: FAILED: {SETPRIV} is missing (Debian util-linux): cannot run as uid {uid}", file=sys.stderr)
        return 1
    runfiles = os.environ.get("RUNFILES_DIR") or os.environ["TEST_SRCDIR"]
    old_roots = sorted({runfiles, os.path.realpath(runfiles)}, key=len, reverse=True)
    base = Path(tempfile.mkdtemp(prefix=f"causeway-test-uid{uid}-", dir="/tmp"))
    try:
        base.chmod(0o755)
        # The name ends in .runfiles: py_binary stubs in the copy find their runfiles from their path.
        copy = base / "test.runfiles"
        shutil.copytree(runfiles, copy, symlinks=False)
        home = base / "home"
        home.mkdir()
        os.chown(home, uid, uid)
        xml_copy = home / "test.xml"
        env = {k: _rewrite(v, old_roots, str(copy)) for k, v in os.environ.items()}
        for name in (
            "TEST_UNDECLARED_OUTPUTS_DIR",
            "TEST_UNDECLARED_OUTPUTS_ANNOTATIONS_DIR",
            "TEST_INFRASTRUCTURE_FAILURE_FILE",
            "TEST_PREMATURE_EXIT_FILE",
            "TEST_SHARD_STATUS_FILE",
            "TEST_WARNINGS_OUTPUT_FILE",
        ):
            env.pop(name, None)
        env.update(
            {
                "CAUSEWAY_TEST_USER": "",  # the child runs the tests itself
                "HOME": str(home),
                "TMPDIR": str(home),
                "TEST_TMPDIR": str(home),
                "USER": f"uid{uid}",
                "LOGNAME": f"uid{uid}",
                "XML_OUTPUT_FILE": str(xml_copy) if os.environ.get("XML_OUTPUT_FILE") else "",
            }
        )
        cwd = _rewrite(os.getcwd(), old_roots, str(copy))
        me = _rewrite(os.path.abspath(sys.argv[0]), old_roots, str(copy))
        command = [
            SETPRIV,
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            sys.executable,
            me,
            *sys.argv[1:],
        ]
        print(f"py_pytest: running as uid {uid} from {copy}", file=sys.stderr, flush=True)
        code = subprocess.run(command, env=env, cwd=cwd, check=False).returncode
        if os.environ.get("XML_OUTPUT_FILE") and xml_copy.is_file():
            shutil.copyfile(xml_copy, os.environ["XML_OUTPUT_FILE"])
        return code
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    user = os.environ.get("CAUSEWAY_TEST_USER", "")
    if user == "root":
        if os.geteuid() != 0:
            print(
                "py_pytest: FAILED: this target runs the validator's sandbox as a root service (setpriv to the "
                f"sandbox uid); it cannot run as uid {os.geteuid()}. Run `bazel test` as root (CI does), or run "
                "the matching *_nonroot target.",
                file=sys.stderr,
            )
            return 1
    elif user:
        uid = int(user)
        if os.geteuid() == 0:
            return run_as_uid(uid)
        # Already unprivileged: run as we are (the point is only that it is not root).
    return run_pytest()


if __name__ == "__main__":
    sys.exit(main())
