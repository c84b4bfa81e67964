"""A tiny gRPC-importing program: the example payload of //tools/oci/example:hello_image."""

from __future__ import annotations

import sys

import grpc


def main() -> int:
    print(f"hello from python {sys.version_info.major}.{sys.version_info.minor}, grpc {grpc.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
