"""Tensors as the runner sees them: OIP datatypes, signatures, and checks against a signature.

Arrays are numpy arrays in native (little-endian on x86) byte order. Two OIP datatypes have no
numpy dtype of their own: BF16 travels as its uint16 bit pattern (loaders reinterpret it), and
BYTES is an object array of `bytes`. Every check raises `InvalidArgument` with a message that names
the tensor and says what was expected, because these messages go back to the client verbatim.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Mapping, Sequence

import numpy as np

from libs.errors.domain_errors import InvalidArgument

# OIP datatype -> numpy dtype of its in-memory representation.
DTYPES: Mapping[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),  # bit pattern; numpy has no bfloat16
    "BYTES": np.dtype(np.object_),
}
DATATYPES = tuple(DTYPES)
_NUMPY_TO_OIP = {np.dtype(v).str: k for k, v in DTYPES.items() if k not in ("BF16", "BYTES")}


def datatype_of(array: np.ndarray) -> str:
    """The OIP datatype of a numpy array (object arrays are BYTES; uint16 is UINT16, never BF16)."""
    if array.dtype == np.object_:
        return "BYTES"
    name = _NUMPY_TO_OIP.get(array.dtype.newbyteorder("<").str)
    if name is None:
        raise InvalidArgument(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")
    return name


def check_datatype(datatype: str, what: str) -> str:
    if datatype not in DTYPES:
        raise InvalidArgument(f"{what}: unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}")
    return datatype


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A named tensor of a model's signature; -1 in `shape` means any size (first: the batch)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.name} {self.datatype}[{', '.join(str(d) for d in self.shape)}]"


@dataclasses.dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batchable(self) -> bool:
        """True when every tensor's first dimension is the (variable) batch dimension."""
        specs = self.inputs + self.outputs
        return bool(specs) and all(s.shape and s.shape[0] == -1 for s in specs)

    def input(self, name: str) -> TensorSpec | None:
        return next((s for s in self.inputs if s.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((s for s in self.outputs if s.name == name), None)

    def select_outputs(self, requested: Sequence[str]) -> tuple[TensorSpec, ...]:
        """The outputs to return: the requested ones (all if none), refusing names the model lacks."""
        if not requested:
            return self.outputs
        found = [(n, self.output(n)) for n in requested]
        unknown = [n for n, s in found if s is None]
        if unknown:
            raise InvalidArgument(
                f"requested output(s) {', '.join(unknown)} unknown; the model has {[s.name for s in self.outputs]}"
            )
        return tuple(s for _, s in found if s is not None)


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


def check_shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"{what}: shape {list(shape)} has a negative dimension")
    return tuple(int(d) for d in shape)


def from_raw(raw: bytes, datatype: str, shape: Sequence[int], what: str) -> np.ndarray:
    """Decode raw little-endian bytes (BYTES: 4-byte length-prefixed items) into an array."""
    count = element_count(shape)
    if datatype == "BYTES":
        return bytes_from_raw(raw, count, what).reshape(shape)
    dtype = DTYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidArgument(
            f"{what}: {len(raw)} bytes of raw content, but {datatype} with shape {list(shape)} "
            f"needs exactly {expected} bytes ({count} elements x {dtype.itemsize})"
        )
    # frombuffer is zero-copy over the request's bytes; read-only, which is all inference needs.
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def bytes_from_raw(raw: bytes, count: int, what: str) -> np.ndarray:
    items: list[bytes] = []
    offset, size = 0, len(raw)
    while offset < size:
        if offset + 4 > size:
            raise InvalidArgument(f"{what}: BYTES content is truncated inside a 4-byte length prefix at byte {offset}")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > size:
            raise InvalidArgument(
                f"{what}: BYTES element {len(items)} declares {length} bytes but only {size - offset} remain"
            )
        items.append(raw[offset : offset + length])
        offset += length
    if len(items) != count:
        raise InvalidArgument(f"{what}: {len(items)} BYTES elements in the raw content, but the shape needs {count}")
    out = np.empty(count, dtype=np.object_)
    out[:] = items
    return out


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    """Encode an array as OIP raw content (row-major, little-endian; BYTES length-prefixed)."""
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()


def check_against(signature: Signature, tensors: Mapping[str, np.ndarray], datatypes: Mapping[str, str]) -> int:
    """Check names, datatypes and shapes against the signature; return the batch size (rows).

    For a batchable signature every input must have the same first dimension (the rows); for a
    non-batchable one the request counts as one row.
    """
    expected = {s.name for s in signature.inputs}
    unknown = sorted(set(tensors) - expected)
    if unknown:
        raise InvalidArgument(
            f"unknown input(s) {', '.join(unknown)}; the model takes "
            + ", ".join(s.describe() for s in signature.inputs)
        )
    missing = sorted(expected - set(tensors))
    if missing:
        raise InvalidArgument(
            f"missing input(s) {', '.join(missing)}; the model takes "
            + ", ".join(s.describe() for s in signature.inputs)
        )
    rows: int | None = None
    for spec in signature.inputs:
        array, datatype = tensors[spec.name], datatypes[spec.name]
        if datatype != spec.datatype:
            raise InvalidArgument(f"input {spec.name}: datatype {datatype}, but the model takes {spec.describe()}")
        if len(array.shape) != len(spec.shape):
            raise InvalidArgument(
                f"input {spec.name}: shape {list(array.shape)} has rank {len(array.shape)}, "
                f"but the model takes {spec.describe()}"
            )
        for axis, (got, want) in enumerate(zip(array.shape, spec.shape, strict=True)):
            if want != -1 and got != want:
                raise InvalidArgument(
                    f"input {spec.name}: dimension {axis} is {got}, but the model takes {spec.describe()}"
                )
        if signature.batchable:
            if rows is not None and array.shape[0] != rows:
                raise InvalidArgument(
                    f"input {spec.name}: batch dimension {array.shape[0]} differs from the other inputs' {rows}"
                )
            rows = array.shape[0]
    if signature.batchable and rows == 0:
        raise InvalidArgument("the request has 0 rows (batch dimension 0)")
    return rows if signature.batchable and rows is not None else 1


def zeros(spec: TensorSpec, rows: int) -> np.ndarray:
    """A zero tensor of `spec` with `rows` in a -1 batch dimension and 1 in other -1 dims (warm-up)."""
    shape = [rows if i == 0 and d == -1 else (1 if d == -1 else d) for i, d in enumerate(spec.shape)]
    if spec.datatype == "BYTES":
        out = np.empty(element_count(shape), dtype=np.object_)
        out[:] = [b""] * out.size
        return out.reshape(shape)
    return np.zeros(shape, dtype=DTYPES[spec.datatype])
