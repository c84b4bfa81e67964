"""Entry point of every `py_pytest` target: runs pytest on the test's own source files.

Bazel passes the files through CAUSEWAY_PYTEST_FILES (runfiles-relative); results go to the JUnit
XML file Bazel asks for, so `bazel test` shows per-case results.
"""

from __future__ import annotations

import os
import sys

import pytest


def main() -> int:
    files = [f for f in os.environ.get("CAUSEWAY_PYTEST_FILES", "").split(",") if f]
    if not files:
        print("py_pytest: no test files given", file=sys.stderr)
        return 2
    args = ["-p", "no:cacheprovider", "-q", "--strict-markers", *files]
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        args.append(f"--junitxml={xml}")
    if os.environ.get("TESTBRIDGE_TEST_ONLY"):
        args += ["-k", os.environ["TESTBRIDGE_TEST_ONLY"]]
    args += sys.argv[1:]
    return pytest.main(args)


if __name__ == "__main__":
    sys.exit(main())
