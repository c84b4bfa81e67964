"""Batch-job data: read records from parquet / safetensors / NumPy files, write outputs alike.

Locations are URIs opened through pyarrow's filesystems (file://, and s3:// / gs:// with the
platform's credentials). file:// locations must lie under one of the configured roots, so a job
can neither read the runner's own files nor write outside the data area. NumPy files are read
with `allow_pickle=False` and written without object arrays: no pickle either way.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from libs.errors.domain_errors import FailedPrecondition, InvalidArgument
from services.gpu_runner.domain.tensors import DTYPES, TensorSpec

FORMATS = ("PARQUET", "SAFETENSORS", "NUMPY")
_EXTENSIONS = {"PARQUET": (".parquet",), "SAFETENSORS": (".safetensors",), "NUMPY": (".npy", ".npz")}
_OUT_EXT = {"PARQUET": ".parquet", "SAFETENSORS": ".safetensors", "NUMPY": ".npz"}
SCHEMES = ("file", "s3", "gs")

Arrays = dict[str, np.ndarray]


class Storage:
    """Opens job URIs; `roots` confines file:// URIs (empty: file:// is refused)."""

    def __init__(self, roots: Sequence[Path] = ()) -> None:
        self.roots = [Path(r).resolve() for r in roots]

    def open(self, uri: str, what: str) -> tuple[pafs.FileSystem, str]:
        scheme = uri.split("://", 1)[0] if "://" in uri else ""
        if scheme not in SCHEMES:
            raise InvalidArgument(f"{what}: URI {uri!r} must start with one of {', '.join(s + '://' for s in SCHEMES)}")
        if scheme == "file":
            path = Path(uri[len("file://") :]).resolve()
            if not any(path.is_relative_to(root) for root in self.roots):
                allowed = ", ".join(str(r) for r in self.roots) or "none configured"
                raise InvalidArgument(f"{what}: {path} is outside the runner's data roots ({allowed})")
            return pafs.LocalFileSystem(), str(path)
        try:
            return pafs.FileSystem.from_uri(uri)
        except (pa.ArrowException, ValueError, OSError) as err:
            raise InvalidArgument(f"{what}: cannot open {uri!r}: {err}") from None

    def check_output(self, uri: str) -> None:
        """INVALID_ARGUMENT unless the output location is new or an empty directory."""
        fs, path = self.open(uri, "output.uri")
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            raise InvalidArgument(f"output.uri {uri!r} is a file; give a directory (prefix) that does not exist yet")
        if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(path)):
            raise InvalidArgument(f"output.uri {uri!r} is not empty; outputs never overwrite earlier ones")

    def input_files(self, uri: str, fmt: str) -> tuple[pafs.FileSystem, list[str]]:
        fs, path = self.open(uri, "input.uri")
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InvalidArgument(f"input.uri {uri!r} does not exist")
        if info.type == pafs.FileType.File:
            return fs, [path]
        files = sorted(
            f.path
            for f in fs.get_file_info(pafs.FileSelector(path))
            if f.type == pafs.FileType.File and f.path.endswith(_EXTENSIONS[fmt])
        )
        if not files:
            raise InvalidArgument(f"input.uri {uri!r} holds no {'/'.join(_EXTENSIONS[fmt])} files")
        return fs, files


def _conform(array: np.ndarray, spec: TensorSpec, what: str) -> np.ndarray:
    """Reshape to the signature's trailing dims and cast within the same kind (e.g. f64 -> f32)."""
    rows = array.shape[0]
    trailing = list(spec.shape[1:])
    if -1 not in trailing:
        try:
            array = array.reshape([rows, *trailing])
        except ValueError:
            raise FailedPrecondition(f"{what}: shape {list(array.shape)} does not fit {spec.describe()}") from None
    if spec.datatype == "BYTES":
        return array.astype(object)
    try:
        return array.astype(DTYPES[spec.datatype], casting="same_kind", copy=False)
    except TypeError:
        raise FailedPrecondition(f"{what}: {array.dtype} values cannot be read as {spec.datatype}") from None


def _column(batch: pa.RecordBatch, column: str, what: str) -> np.ndarray:
    index = batch.schema.get_field_index(column)
    if index < 0:
        raise FailedPrecondition(f"{what}: column {column!r} is not in the file (columns: {batch.schema.names})")
    col = batch.column(index)
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(col), -1) if len(col) else flat.reshape(0, 0)
    if pa.types.is_binary(col.type) or pa.types.is_string(col.type):
        return np.array([v if isinstance(v, bytes) else str(v).encode() for v in col.to_pylist()], dtype=object)
    return col.to_numpy(zero_copy_only=False)


class DatasetReader:
    """Record batches of one input file as arrays named after the model's inputs."""

    def __init__(
        self, fs: pafs.FileSystem, path: str, fmt: str, inputs: Sequence[TensorSpec], mapping: Mapping[str, str]
    ):
        self.fs, self.path, self.fmt, self.inputs = fs, path, fmt, list(inputs)
        self.keys = {s.name: mapping.get(s.name, s.name) for s in self.inputs}
        self._arrays: Arrays | None = None
        if fmt != "PARQUET":
            self._arrays = self._load_tensors()

    def _bytes(self) -> bytes:
        with self.fs.open_input_file(self.path) as handle:
            return handle.readall()

    def _load_tensors(self) -> Arrays:
        name = posixpath.basename(self.path)
        try:
            if self.fmt == "SAFETENSORS":
                from safetensors.numpy import load

                stored = load(self._bytes())
            elif name.endswith(".npy"):
                if len(self.inputs) != 1:
                    raise FailedPrecondition(
                        f"{name}: a .npy file holds one tensor; the model takes {len(self.inputs)}"
                    )
                stored = {self.keys[self.inputs[0].name]: np.load(io.BytesIO(self._bytes()), allow_pickle=False)}
            else:
                with np.load(io.BytesIO(self._bytes()), allow_pickle=False) as npz:
                    stored = {k: npz[k] for k in npz.files}
        except (ValueError, OSError) as err:
            raise FailedPrecondition(f"{name}: cannot read it as {self.fmt}: {err}") from None
        out = {}
        for spec in self.inputs:
            key = self.keys[spec.name]
            if key not in stored:
                raise FailedPrecondition(f"{name}: no tensor {key!r} for input {spec.name} (has {sorted(stored)})")
            out[spec.name] = _conform(stored[key], spec, f"{name}: {key}")
        rows = {a.shape[0] for a in out.values()}
        if len(rows) != 1:
            raise FailedPrecondition(f"{name}: the input tensors disagree on the number of records: {sorted(rows)}")
        return out

    @property
    def records(self) -> int:
        if self._arrays is not None:
            return next(iter(self._arrays.values())).shape[0]
        with self.fs.open_input_file(self.path) as handle:
            return pq.ParquetFile(handle).metadata.num_rows

    def batches(self, size: int) -> Iterator[Arrays]:
        if self._arrays is not None:
            total = self.records
            for start in range(0, total, size):
                yield {k: v[start : start + size] for k, v in self._arrays.items()}
            return
        name = posixpath.basename(self.path)
        columns = sorted(set(self.keys.values()))
        with self.fs.open_input_file(self.path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=size, columns=columns):
                yield {
                    s.name: _conform(_column(batch, self.keys[s.name], name), s, f"{name}: {self.keys[s.name]}")
                    for s in self.inputs
                }


class DatasetWriter:
    """Writes one output file per input file (`part-00000.<ext>`), then a `_SUCCESS` summary."""

    def __init__(self, fs: pafs.FileSystem, root: str, fmt: str) -> None:
        self.fs, self.root, self.fmt = fs, root, fmt
        fs.create_dir(root, recursive=True)
        self._parts: list[str] = []
        self._pending: dict[str, list[np.ndarray]] = {}
        self._parquet: pq.ParquetWriter | None = None
        self._index = -1

    def start_part(self) -> None:
        self.finish_part()
        self._index += 1

    def _part_path(self) -> str:
        return posixpath.join(self.root, f"part-{self._index:05d}{_OUT_EXT[self.fmt]}")

    def write(self, outputs: Arrays) -> None:
        if self.fmt == "PARQUET":
            table = pa.table({name: _to_arrow(a) for name, a in outputs.items()})
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.fs.open_output_stream(self._part_path()), table.schema)
            self._parquet.write_table(table)
            return
        for name, array in outputs.items():
            if array.dtype == object:
                raise FailedPrecondition(f"output {name} holds BYTES; write it as PARQUET (NumPy/safetensors cannot)")
            self._pending.setdefault(name, []).append(array)

    def finish_part(self) -> None:
        if self._index < 0:
            return
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        elif self._pending:
            arrays = {k: np.concatenate(v) for k, v in self._pending.items()}
            if self.fmt == "SAFETENSORS":
                from safetensors.numpy import save

                data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
            else:
                buffer = io.BytesIO()
                # numpy's stub lets a **mapping fill savez's allow_pickle flag too, so it refuses one.
                np.savez(buffer, **arrays)  # type: ignore[arg-type]
                data = buffer.getvalue()
            with self.fs.open_output_stream(self._part_path()) as out:
                out.write(data)
            self._pending = {}
        else:
            return
        self._parts.append(posixpath.basename(self._part_path()))

    def commit(self, summary: Mapping[str, object]) -> None:
        self.finish_part()
        body = json.dumps({**summary, "parts": self._parts}, indent=2, sort_keys=True).encode()
        with self.fs.open_output_stream(posixpath.join(self.root, "_SUCCESS")) as out:
            out.write(body)


def _to_arrow(array: np.ndarray) -> pa.Array:
    if array.dtype == object:
        if array.ndim <= 1:
            return pa.array(list(array), pa.binary())
        return pa.array([list(row) for row in array.reshape(len(array), -1)], pa.list_(pa.binary()))
    if array.ndim <= 1:
        return pa.array(array)
    flat = np.ascontiguousarray(array).reshape(len(array), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
