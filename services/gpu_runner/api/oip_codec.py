"""Open Inference Protocol messages <-> numpy arrays, for raw and typed tensor contents.

Raw contents (what tritonclient always sends) are decoded zero-copy; typed contents (KServe's
client with list data, curl-style JSON clients) go through the field the OIP assigns to each
datatype. A request uses one or the other; the response answers in kind, except that FP16/BF16
outputs have no typed field, so a response holding one is raw throughout (as KServe does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from inference import grpc_service_pb2 as pb
from libs.errors.domain_errors import InvalidArgument
from services.gpu_runner.domain import tensors
from services.gpu_runner.domain.tensors import DTYPES, TensorSpec

# Datatype -> the InferTensorContents field that carries it when typed.
TYPED_FIELD: Mapping[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_FIELDS = sorted(set(TYPED_FIELD.values()))
SHARED_MEMORY_PARAMETERS = frozenset({"shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"})


@dataclasses.dataclass(frozen=True)
class DecodedRequest:
    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    raw: bool
    requested_outputs: tuple[str, ...]


def _refuse_shared_memory(parameters, where: str) -> None:
    used = SHARED_MEMORY_PARAMETERS.intersection(parameters.keys())
    if used:
        raise InvalidArgument(
            f"{where}: shared-memory parameters ({', '.join(sorted(used))}) are not supported by this runner; "
            "send the tensor in the request"
        )


def _typed(tensor: pb.ModelInferRequest.InferInputTensor, shape: tuple[int, ...], what: str) -> np.ndarray:
    datatype = tensor.datatype
    field = TYPED_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(f"{what}: {datatype} has no typed contents field; send it in raw_input_contents")
    populated = [f for f in _ALL_FIELDS if f != field and len(getattr(tensor.contents, f))]
    if populated:
        raise InvalidArgument(f"{what}: {datatype} values go in contents.{field}, not contents.{populated[0]}")
    values = getattr(tensor.contents, field)
    count = tensors.element_count(shape)
    if len(values) != count:
        raise InvalidArgument(
            f"{what}: {len(values)} values in contents.{field}, but shape {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=np.object_)
        array[:] = list(values)
        return array.reshape(shape)
    try:
        return np.array(values, dtype=DTYPES[datatype]).reshape(shape)
    except OverflowError:
        raise InvalidArgument(f"{what}: a value in contents.{field} does not fit {datatype}") from None


def decode_request(request: pb.ModelInferRequest) -> DecodedRequest:
    """Arrays for the request's inputs; InvalidArgument names the first thing that is wrong."""
    if not request.model_name:
        raise InvalidArgument("model_name is required")
    if not request.inputs:
        raise InvalidArgument("the request has no inputs")
    _refuse_shared_memory(request.parameters, "request parameters")
    raw = len(request.raw_input_contents) > 0
    if raw and len(request.raw_input_contents) != len(request.inputs):
        raise InvalidArgument(
            f"{len(request.raw_input_contents)} raw_input_contents for {len(request.inputs)} inputs; "
            "send one per input, in order"
        )
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for index, tensor in enumerate(request.inputs):
        what = f"input {tensor.name or index}"
        if not tensor.name:
            raise InvalidArgument(f"input {index} has no name")
        if tensor.name in inputs:
            raise InvalidArgument(f"input {tensor.name} appears twice")
        _refuse_shared_memory(tensor.parameters, what)
        tensors.check_datatype(tensor.datatype, what)
        shape = tensors.check_shape(tensor.shape, what)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(f"{what}: a request uses raw_input_contents or typed contents, not both")
            array = tensors.from_raw(request.raw_input_contents[index], tensor.datatype, shape, what)
        else:
            array = _typed(tensor, shape, what)
        inputs[tensor.name] = array
        datatypes[tensor.name] = tensor.datatype
    requested = []
    for output in request.outputs:
        _refuse_shared_memory(output.parameters, f"requested output {output.name}")
        if "classification" in output.parameters:
            raise InvalidArgument(f"requested output {output.name}: the classification extension is not supported")
        requested.append(output.name)
    return DecodedRequest(inputs, datatypes, raw, tuple(requested))


def encode_response(
    request: pb.ModelInferRequest,
    model_name: str,
    version: int,
    specs: Sequence[TensorSpec],
    outputs: Mapping[str, np.ndarray],
    raw: bool,
) -> pb.ModelInferResponse:
    """The response with `specs`' outputs, raw when the request was raw or a datatype needs it."""
    raw = raw or any(s.datatype not in TYPED_FIELD for s in specs)
    response = pb.ModelInferResponse(model_name=model_name, model_version=str(version), id=request.id)
    for spec in specs:
        array = outputs[spec.name]
        tensor = response.outputs.add(name=spec.name, datatype=spec.datatype, shape=list(array.shape))
        if raw:
            response.raw_output_contents.append(tensors.to_raw(array, spec.datatype))
        elif spec.datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)
            )
        else:
            getattr(tensor.contents, TYPED_FIELD[spec.datatype]).extend(array.reshape(-1).tolist())
    return response


def tensor_metadata(spec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
