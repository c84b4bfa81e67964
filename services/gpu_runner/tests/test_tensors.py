"""OIP datatypes: raw decoding and encoding for every datatype, and checks against a signature."""

import struct

import numpy as np
import pytest

from libs.errors.domain_errors import InvalidArgument
from services.gpu_runner.domain import tensors as t


@pytest.mark.parametrize("datatype", [d for d in t.DATATYPES if d != "BYTES"])
def test_raw_round_trip_every_numeric_datatype(datatype):
    dtype = t.DTYPES[datatype]
    values = (np.arange(6) % 2).astype(dtype) if datatype == "BOOL" else np.arange(6).astype(dtype)
    raw = t.to_raw(values.reshape(2, 3), datatype)
    assert len(raw) == 6 * dtype.itemsize
    back = t.from_raw(raw, datatype, [2, 3], "input x")
    assert back.dtype == dtype and back.shape == (2, 3)
    assert np.array_equal(back.reshape(-1), values)


def test_bytes_round_trip_and_length_prefix():
    items = np.array([b"hello", b"", b"causeway"], dtype=object)
    raw = t.to_raw(items, "BYTES")
    assert raw[:4] == struct.pack("<I", 5)
    back = t.from_raw(raw, "BYTES", [3], "input s")
    assert list(back) == [b"hello", b"", b"causeway"]


@pytest.mark.parametrize(
    ("raw", "shape", "message"),
    [
        (struct.pack("<I", 3) + b"ab", [1], "declares 3 bytes but only 2 remain"),
        (struct.pack("<I", 1) + b"a" + b"\x01\x00", [1], "truncated inside a 4-byte length prefix"),
        (struct.pack("<I", 1) + b"a", [2], "1 BYTES elements in the raw content, but the shape needs 2"),
    ],
)
def test_malformed_bytes_are_invalid(raw, shape, message):
    with pytest.raises(InvalidArgument, match=message):
        t.from_raw(raw, "BYTES", shape, "input s")


def test_wrong_byte_size_names_the_expected_size():
    with pytest.raises(
        InvalidArgument, match=r"input x: 12 bytes of raw content, but FP32 with shape \[2, 2\] needs exactly 16"
    ):
        t.from_raw(b"\0" * 12, "FP32", [2, 2], "input x")


def test_datatype_of_maps_numpy_back_to_oip():
    assert t.datatype_of(np.zeros(1, np.float32)) == "FP32"
    assert t.datatype_of(np.zeros(1, ">f8")) == "FP64"
    assert t.datatype_of(np.zeros(1, np.bool_)) == "BOOL"
    assert t.datatype_of(np.array([b"a"], dtype=object)) == "BYTES"
    with pytest.raises(InvalidArgument):
        t.datatype_of(np.zeros(1, np.complex64))


SIG = t.Signature(
    inputs=(t.TensorSpec("x", "FP32", (-1, 4)), t.TensorSpec("mask", "BOOL", (-1, 4))),
    outputs=(t.TensorSpec("y", "FP32", (-1, 2)),),
)


def _types(**kw):
    return {"x": "FP32", "mask": "BOOL", **kw}


def test_check_against_returns_rows():
    x, mask = np.zeros((3, 4), np.float32), np.zeros((3, 4), bool)
    assert t.check_against(SIG, {"x": x, "mask": mask}, _types()) == 3


@pytest.mark.parametrize(
    ("inputs", "types", "message"),
    [
        ({"x": np.zeros((1, 4), np.float32)}, _types(), "missing input"),
        (
            {"x": np.zeros((1, 4), np.float32), "mask": np.zeros((1, 4), bool), "z": np.zeros(1)},
            _types(z="FP64"),
            "unknown input",
        ),
        ({"x": np.zeros((1, 4), np.int32), "mask": np.zeros((1, 4), bool)}, _types(x="INT32"), "datatype INT32"),
        ({"x": np.zeros((1, 5), np.float32), "mask": np.zeros((1, 4), bool)}, _types(), "dimension 1 is 5"),
        ({"x": np.zeros((4,), np.float32), "mask": np.zeros((1, 4), bool)}, _types(), "has rank 1"),
        ({"x": np.zeros((2, 4), np.float32), "mask": np.zeros((3, 4), bool)}, _types(), "differs from"),
        ({"x": np.zeros((0, 4), np.float32), "mask": np.zeros((0, 4), bool)}, _types(), "0 rows"),
    ],
)
def test_check_against_refuses_with_clear_messages(inputs, types, message):
    with pytest.raises(InvalidArgument, match=message):
        t.check_against(SIG, inputs, types)


def test_zeros_fill_batch_and_free_dims():
    spec = t.TensorSpec("s", "INT64", (-1, -1, 3))
    assert t.zeros(spec, 5).shape == (5, 1, 3)
    assert t.zeros(t.TensorSpec("b", "BYTES", (-1,)), 2).tolist() == [b"", b""]
    assert not t.Signature((t.TensorSpec("a", "FP32", (4,)),), (t.TensorSpec("b", "FP32", (-1,)),)).batchable
