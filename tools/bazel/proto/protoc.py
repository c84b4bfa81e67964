"""protoc from grpcio-tools, with the well-known types (google/protobuf/*.proto) on the path."""

from __future__ import annotations

import sys
from importlib import resources

from grpc_tools import protoc


def main(argv: list[str]) -> int:
    wkt = str(resources.files("grpc_tools") / "_proto")
    return protoc.main(["protoc", f"-I{wkt}", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
