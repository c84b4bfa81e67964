"""Run the locked venv's ruff on the workspace (`bazel run` sets BUILD_WORKSPACE_DIRECTORY)."""

import os
import sys

from ruff.__main__ import find_ruff_bin


def main() -> int:
    workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    if not workspace:
        print("run me with `bazel run //tools/lint:ruff -- <ruff args>`", file=sys.stderr)
        return 2
    os.chdir(workspace)
    args = sys.argv[1:] or ["check", "."]
    os.execv(find_ruff_bin(), ["ruff", *args])  # noqa: S606 - replace this process with ruff
    return 1


if __name__ == "__main__":
    sys.exit(main())
