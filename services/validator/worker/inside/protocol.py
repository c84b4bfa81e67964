"""The worker's side of the job protocol: one JSON job on stdin, JSON lines on a private fd.

Messages (one JSON object per line):
  {"type": "ready", "runtime": {...}, "sandbox": {...}}      after hardening, before the artifact is opened
  {"type": "step", "name": "<step>", "ok": true, "result": {...}, "seconds": 0.12}
  {"type": "step", "name": "<step>", "ok": false, "error": "...", "kind": "model_error" | "unsupported"}
  {"type": "fatal", "kind": "memory_limit" | "bad_job" | "internal", "error": "..."}
  {"type": "done"}

This file runs inside the sandbox: it imports only the standard library.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

PROTOCOL_VERSION = 1

# Exit codes the launcher understands (anything else is a crash).
EXIT_OK = 0
EXIT_MEMORY = 86
EXIT_BAD_JOB = 87
EXIT_HARDENING = 88

# Datatype names are the Open Inference Protocol strings (causeway.common.v1.DataType without prefix).
NUMPY_TO_OIP = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
OIP_TO_NUMPY = {v: k for k, v in NUMPY_TO_OIP.items()}


class Channel:
    """Writes protocol messages to a private duplicate of the original stdout.

    fd 1 itself is pointed at stderr, so whatever a model prints can never be mistaken for a
    protocol message by accident (a deliberately malicious pickle can still write anything: the
    launcher treats all output as untrusted and caps its size).
    """

    def __init__(self) -> None:
        private = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._out: IO[str] = os.fdopen(private, "w", buffering=1, encoding="utf-8")

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message, separators=(",", ":"), allow_nan=True) + "\n")
        self._out.flush()


def memory_error(err: BaseException) -> bool:
    """True for the ways an allocation refused by RLIMIT_AS surfaces in Python, torch and onnxruntime."""
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return any(
        marker in text
        for marker in (
            "can't allocate memory",
            "cannot allocate memory",
            "bad_alloc",
            "out of memory",
            "failed to allocate",
        )
    )
