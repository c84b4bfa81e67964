"""protoc plugin from mypy-protobuf: writes *_pb2.pyi, the types of the generated messages and enums."""

import sys

from mypy_protobuf.main import main

if __name__ == "__main__":
    sys.exit(main())
