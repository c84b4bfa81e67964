"""protoc plugin from mypy-protobuf: writes *_pb2_grpc.pyi, the types of the generated gRPC stubs."""

import sys

from mypy_protobuf.main import grpc

if __name__ == "__main__":
    sys.exit(grpc())
