"""Run the locked venv's mypy on the workspace with mypy.ini (`bazel run` sets BUILD_WORKSPACE_DIRECTORY).

The generated protobuf modules and their .pyi stubs are not in the source tree: they are this
binary's runfiles (its deps), so MYPYPATH points mypy there.
"""

import os
import sys
from pathlib import Path

# This file in the runfiles is <runfiles>/<workspace>/tools/lint/mypy_main.py (`bazel run` does not
# export RUNFILES_DIR); abspath, not resolve: the runfiles are symlinks into the source tree.
RUNFILES_WORKSPACE = Path(os.path.abspath(__file__)).parents[2]


def main() -> int:
    workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    if not workspace:
        print("run me with `bazel run //tools/lint:mypy -- [mypy args]`", file=sys.stderr)
        return 2
    protos = RUNFILES_WORKSPACE / "protos"
    if not (protos / "causeway").is_dir():
        print(f"generated protos not found in the runfiles ({protos})", file=sys.stderr)
        return 2
    env = dict(os.environ, MYPYPATH=str(protos))
    # Bazel's PYTHONPATH holds the runfiles copies of first-party code; mypy reads the work tree.
    env.pop("PYTHONPATH", None)
    os.chdir(workspace)
    argv = [sys.executable, "-m", "mypy", *sys.argv[1:]]
    os.execve(sys.executable, argv, env)  # noqa: S606 - replace this process with mypy
    return 1


if __name__ == "__main__":
    sys.exit(main())
