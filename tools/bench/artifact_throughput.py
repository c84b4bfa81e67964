"""Artifact upload/download throughput through the real registry vs a plain file copy on the same disk.

    bazel run //tools/bench:artifact_throughput -- [--size-mb 1024] [--workdir /var/tmp]

Writes a file of pseudo-random bytes, then in one run: hashes it (what a client does before an
upload), uploads it through ArtifactService (the registry hashes, writes to staging, fsyncs,
renames), downloads it to a file while hashing (the registry re-hashes while reading), and copies
the same file with shutil.copyfile onto the same disk. The registry's data directory, the source
file and both destinations share one directory, so all four touch the same file system.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import grpc

from causeway.registry.v1 import artifact_service_pb2, artifact_service_pb2_grpc
from tools.bench.common import MIB, file_chunks, file_sha256, running_registry, sha256_digest, token, upload_requests


def _write_source(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as out:
        for number in range(0, size, MIB):
            piece = number.to_bytes(8, "big") + block[8:]  # every MiB differs; no dedup anywhere
            out.write(piece[: min(MIB, size - number)])
        os.fsync(out.fileno())


def _download(stub, hex_digest: str, md, path: Path) -> str:
    sha = hashlib.sha256()
    responses = stub.DownloadArtifact(
        artifact_service_pb2.DownloadArtifactRequest(digest=sha256_digest(hex_digest)), metadata=md
    )
    with open(path, "wb") as out:
        for response in responses:
            if response.WhichOneof("content") == "chunk":
                sha.update(response.chunk)
                out.write(response.chunk)
        os.fsync(out.fileno())
    return sha.hexdigest()


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    with open(target, "rb") as copied:
        os.fsync(copied.fileno())  # the registry fsyncs its blobs; the baseline pays the same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="artifact size in MiB")
    parser.add_argument("--workdir", type=Path, default=None, help="a directory on the disk to measure")
    args = parser.parse_args(argv)
    size = args.size_mb * MIB

    with tempfile.TemporaryDirectory(prefix="bench-artifacts-", dir=args.workdir) as tmp:
        root = Path(tmp)
        source = root / "source.bin"
        _write_source(source, size)
        with running_registry(root) as (registry, idp), grpc.insecure_channel(registry.address) as channel:
            stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
            md = token(idp)
            figures: dict[str, float] = {}

            start = time.perf_counter()
            hex_digest = file_sha256(source)
            figures["client sha256"] = time.perf_counter() - start

            start = time.perf_counter()
            stub.UploadArtifact(upload_requests(file_chunks(source), hex_digest, size), metadata=md)
            figures["upload (gRPC)"] = time.perf_counter() - start

            start = time.perf_counter()
            assert _download(stub, hex_digest, md, root / "downloaded.bin") == hex_digest
            figures["download (gRPC)"] = time.perf_counter() - start

            start = time.perf_counter()
            _copy(source, root / "copied.bin")
            figures["shutil.copyfile"] = time.perf_counter() - start

    mb = size / 1e6
    copy = figures["shutil.copyfile"]
    print(f"artifact_throughput: {size} bytes ({args.size_mb} MiB) on {tmp.rsplit('/', 1)[0]}")
    print(f"{'step':<18} {'seconds':>8} {'MB/s':>9} {'vs copyfile':>12}")
    for label, seconds in figures.items():
        print(f"{label:<18} {seconds:>8.2f} {mb / seconds:>9.1f} {copy / seconds:>11.2f}x")
    print("(vs copyfile: throughput as a fraction of copying the same file on the same disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
